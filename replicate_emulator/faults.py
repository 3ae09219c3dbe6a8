"""Fault injection: what the emulator does wrong on purpose, so tests can prove the service copes.

Count-style faults (`create_429=2`) hit the next N matching events and then clear themselves, so a
test knows exactly which request fails. Each also has a probability form (`create_429_rate=0.1`) for
soak runs. Everything is guarded by one lock because HTTP threads, workers and webhook senders all
consume faults concurrently.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from typing import Any

E6716 = "Director: unexpected error handling prediction (E6716)"
E005 = "The input or output was flagged as sensitive. Please try again with different inputs. (E005)"

# Count-style kinds, in the order they are documented.
COUNT_KINDS: tuple[str, ...] = (
    "create_429",
    "create_500",
    "create_503",
    "drop_after_create",
    "fail_predictions",
    "moderate",
    "webhook_lost",
    "webhook_duplicate",
)
# The probability twin of each count kind.
RATE_FIELDS: dict[str, str] = {kind: f"{kind}_rate" for kind in COUNT_KINDS} | {"fail_predictions": "fail_rate"}
# Plain settings: name -> (type, default). Latency/jitter defaults come from the Emulator's arguments.
SETTINGS: dict[str, tuple[type, Any]] = {
    "latency": (float, 0.2),
    "jitter": (float, 0.0),
    "throttle_reset_seconds": (int, 1),
    "fail_error": (str, E6716),
    "webhook_delay": (float, 0.0),
    "create_rate_limit": (int, 0),  # creates per minute; 0 = unlimited
}
FAULT_NAMES: tuple[str, ...] = COUNT_KINDS + tuple(RATE_FIELDS.values()) + tuple(SETTINGS)


class Faults:
    """The current fault configuration plus the bookkeeping needed to apply it deterministically."""

    def __init__(self, *, latency: float = 0.2, jitter: float = 0.0, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._base = {"latency": float(latency), "jitter": float(jitter)}
        self._rng = random.Random(seed)
        self.injected: dict[str, int] = {}
        self._counts: dict[str, int] = {}
        self._rates: dict[str, float] = {}
        self._settings: dict[str, Any] = {}
        self._creates: deque[float] = deque()  # monotonic times of recent creates, for the rate limit
        self.reset()

    def reset(self) -> None:
        """Back to no faults and the constructor's latency; clears the injected tally."""
        with self._lock:
            self._counts = dict.fromkeys(COUNT_KINDS, 0)
            self._rates = dict.fromkeys(RATE_FIELDS.values(), 0.0)
            self._settings = {name: default for name, (_, default) in SETTINGS.items()} | self._base
            self.injected = {}
            self._creates.clear()

    def configure(self, **values: Any) -> dict[str, Any]:
        """Merge `values` into the configuration; unknown names or bad values raise ValueError, changing nothing."""
        parsed = {name: parse_fault(name, value) for name, value in values.items()}
        with self._lock:
            for name, value in parsed.items():
                if name in self._counts:
                    self._counts[name] = value
                elif name in self._rates:
                    self._rates[name] = value
                else:
                    self._settings[name] = value
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self._counts, **self._rates, **self._settings}

    def get(self, name: str) -> Any:
        with self._lock:
            return self._settings[name]

    def take(self, kind: str) -> bool:
        """Consume one occurrence of `kind` if it is due now (a pending count, else a rate roll)."""
        with self._lock:
            if self._counts[kind] > 0:
                self._counts[kind] -= 1
            else:
                rate = self._rates[RATE_FIELDS[kind]]
                if rate <= 0 or self._rng.random() >= rate:
                    return False
            self.injected[kind] = self.injected.get(kind, 0) + 1
            return True

    def note(self, kind: str) -> None:
        """Record an injected fault that is not a count kind (the create rate limit)."""
        with self._lock:
            self.injected[kind] = self.injected.get(kind, 0) + 1

    def processing_seconds(self) -> float:
        """One draw of latency + jitter: how long a prediction takes from creation to completion."""
        with self._lock:
            latency, jitter = self._settings["latency"], self._settings["jitter"]
            return max(0.0, latency + (self._rng.uniform(0, jitter) if jitter > 0 else 0.0))

    def rate_limited(self) -> int | None:
        """Seconds until a create is allowed again under `create_rate_limit`, or None if one is allowed now."""
        with self._lock:
            limit = self._settings["create_rate_limit"]
            now = time.monotonic()
            while self._creates and self._creates[0] <= now - 60:
                self._creates.popleft()
            if limit <= 0 or len(self._creates) < limit:
                return None
            return max(1, math.ceil(self._creates[0] + 60 - now))

    def record_create(self) -> None:
        with self._lock:
            self._creates.append(time.monotonic())

    def injected_snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.injected)


def parse_fault(name: str, value: Any) -> Any:
    """Coerce one fault value (CLI strings and JSON numbers alike) or raise ValueError with the reason."""
    if name not in FAULT_NAMES:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
    if name in COUNT_KINDS:
        kind, low, high = int, 0, None
    elif name in RATE_FIELDS.values():
        kind, low, high = float, 0.0, 1.0
    else:
        kind, low, high = SETTINGS[name][0], 0, None
    if kind is str:
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
        return value
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not a boolean")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if number < low or (high is not None and number > high):
        raise ValueError(f"{name} must be between {low} and {high}" if high is not None else f"{name} must be >= {low}")
    return number
