"""The command line, shared by `python -m replicate_emulator` and `manage.py replicate_emulator`.

One argparse definition so both entry points accept the same flags; bad values fail in argparse
with a one-line reason (exit status 2) before anything binds a port.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from .emulator import Emulator
from .faults import COUNT_KINDS, RATE_FIELDS, SETTINGS, parse_fault

FAULT_HELP = {
    "create_429": "answer the next N creates with 429 (no prediction created)",
    "create_500": "answer the next N creates with 500 (no prediction created)",
    "create_503": "answer the next N creates with 503 (no prediction created)",
    "drop_after_create": "create the next N predictions but close the connection without answering",
    "fail_predictions": "the next N predictions fail with --fail-error",
    "moderate": "the next N predictions fail with the E005 'flagged as sensitive' error",
    "webhook_lost": "never send the next N webhook messages",
    "webhook_duplicate": "send the next N webhook messages twice (same webhook-id)",
    "throttle_reset_seconds": "the ~Ns reset time quoted by injected 429s (default 1)",
    "fail_error": "error string of injected failures (default the real E6716 'Director' error)",
    "webhook_delay": "seconds to hold every webhook message before sending it",
    "create_rate_limit": "creates allowed per minute; beyond it 429 with the real reset time (0 = off)",
}


def _fault_type(name: str) -> Any:
    def convert(value: str) -> Any:
        try:
            return parse_fault(name, value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name  # argparse names the type in its error message
    return convert


def _non_negative(kind: type) -> Any:
    def convert(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {value!r}") from None
        if number < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
        return number

    return convert


def _port(value: str) -> int:
    port = _non_negative(int)(value)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {value}")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add every emulator flag to `parser` (an argparse or Django CommandParser)."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8787, help="port to bind, 0 = any free port (default 8787)")
    parser.add_argument(
        "--token",
        default=os.environ.get("REPLICATE_EMULATOR_TOKEN", "r8_emulator"),
        help="API token clients must send (default $REPLICATE_EMULATOR_TOKEN or r8_emulator)",
    )
    parser.add_argument(
        "--latency", type=_non_negative(float), default=2.0, help="seconds from create to completion (default 2)"
    )
    parser.add_argument("--jitter", type=_non_negative(float), default=0.0, help="extra random seconds, 0..N")
    parser.add_argument(
        "--retention",
        type=_non_negative(float),
        default=3600.0,
        help="seconds after completion before input/output are removed (default 3600)",
    )
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get("REPLICATE_EMULATOR_WEBHOOK_SECRET"),
        help="whsec_ signing secret (default $REPLICATE_EMULATOR_WEBHOOK_SECRET or random)",
    )
    parser.add_argument("--webhook-retries", type=_non_negative(int), default=3, help="redeliveries (default 3)")
    parser.add_argument(
        "--webhook-backoff",
        type=_non_negative(float),
        default=0.2,
        help="first redelivery delay in seconds, doubling (default 0.2)",
    )
    parser.add_argument(
        "--workers", type=_non_negative(int), default=16, help="threads fetching/rendering images (default 16)"
    )
    parser.add_argument("--public-url", default=None, help="base URL to advertise if not http://host:port")
    parser.add_argument("--seed", type=int, default=None, help="seed for jitter and probability faults")
    group = parser.add_argument_group("faults (count faults hit the next N events, *-rate ones a share of all)")
    for kind in COUNT_KINDS:
        group.add_argument(
            f"--{kind.replace('_', '-')}", dest=kind, type=_fault_type(kind), metavar="N", help=FAULT_HELP[kind]
        )
    for kind, rate in RATE_FIELDS.items():
        group.add_argument(
            f"--{rate.replace('_', '-')}",
            dest=rate,
            type=_fault_type(rate),
            metavar="P",
            help=f"probability 0..1 of {kind.replace('_', ' ')} on every event",
        )
    for name in SETTINGS:
        if name not in ("latency", "jitter"):
            group.add_argument(f"--{name.replace('_', '-')}", dest=name, type=_fault_type(name), help=FAULT_HELP[name])
    return parser


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make a usage error print just `prog: error: reason` (no usage dump) and exit with status 2."""
    original = parser.error

    def error(message: str) -> Any:
        if getattr(parser, "called_from_command_line", True) is False:
            return original(message)  # Django's call_command wants its CommandError
        parser.exit(2, f"{parser.prog}: error: {message}\n")

    parser.error = error  # type: ignore[method-assign]
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m replicate_emulator",
        description="A local stand-in for the Replicate HTTP API (predictions, files, signed webhooks, faults).",
    )
    return one_line_errors(add_arguments(parser))


def fault_options(options: dict[str, Any]) -> dict[str, Any]:
    names = (*COUNT_KINDS, *RATE_FIELDS.values(), *SETTINGS)
    return {name: options[name] for name in names if options.get(name) is not None}


def emulator_from_options(options: dict[str, Any]) -> Emulator:
    """Build (not start) an Emulator from parsed options; ValueError for a bad secret."""
    return Emulator(
        api_token=options["token"],
        host=options["host"],
        port=options["port"],
        latency=options["latency"],
        jitter=options["jitter"],
        retention_seconds=options["retention"],
        webhook_secret=options["webhook_secret"],
        workers=max(1, options["workers"]),
        webhook_retries=options["webhook_retries"],
        webhook_backoff=options["webhook_backoff"],
        public_url=options["public_url"],
        seed=options["seed"],
        faults=fault_options(options),
    )


def serve(options: dict[str, Any], out: Any = None) -> int:
    """Start, print how to use it, and block until Ctrl-C / SIGTERM."""
    out = out or sys.stdout
    emulator = emulator_from_options(options)
    try:
        emulator.start()
    except OSError as exc:
        raise SystemExit(f"replicate_emulator: cannot bind {options['host']}:{options['port']}: {exc}") from None
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"Replicate emulator running at {emulator.base_url}", file=out)
    print(f"  export REPLICATE_BASE_URL={emulator.base_url}", file=out)
    print(f"  export REPLICATE_API_TOKEN={emulator.api_token}", file=out)
    active = {k: v for k, v in fault_options(options).items()}
    if active:
        print(f"  faults: {active}", file=out)
    print("Press Ctrl-C to stop.", file=out, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    options = vars(build_parser().parse_args(argv))
    try:
        return serve(options)
    except ValueError as exc:
        print(f"replicate_emulator: {exc}", file=sys.stderr)
        return 2
