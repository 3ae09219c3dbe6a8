"""The `stage` and `reprocess` commands: happy paths, every bad argument, dry runs, confirmation."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from staging.models import Attempt, StagingJob
from tests.fixtures.pipeline import drive

from .conftest import MANAGE

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# --- stage ---------------------------------------------------------------------------------------


def test_stage_with_emulator_waits_and_prints_output_paths_last(settings, photo_path: Path) -> None:
    settings.REPLICATE_API_TOKEN = ""
    out = run("stage", str(photo_path), "--model", "seedream-4", "--emulator", "--wait", "--emulator-latency", "0.1")

    job = StagingJob.objects.get()
    assert job.status == "succeeded"
    last = out.strip().splitlines()[-1]
    assert Path(last).is_absolute() and Path(last).is_file()
    with Image.open(last) as image:
        image.verify()
    assert "attempt 1: succeeded" in out
    assert settings.REPLICATE_API_TOKEN == ""  # the emulator's settings do not outlive the command


def test_stage_without_wait_queues_and_prints_the_id(emulated, photo_path: Path) -> None:
    out = run("stage", str(photo_path), "--model", "flux-kontext-pro", "--room-type", "bedroom", "--seed", "7")
    job = StagingJob.objects.get()
    assert out.strip().splitlines()[-1] == str(job.pk)
    assert (job.room_type, job.seed) == ("bedroom", 7)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--model", "dall-e"], "known models: qwen-image-edit"),
        (["--model", "flux-kontext-pro", "--config", "{not json"], "--config is not valid JSON"),
        (["--model", "flux-kontext-pro", "--config", "[1]"], "must be a JSON object"),
        (["--model", "flux-kontext-pro", "--config", '{"safety_tolerance": 6}'], "safety_tolerance"),
        (["--model", "seedream-4", "--config", '{"output_format": "png"}'], "output_format"),
    ],
)
def test_stage_bad_arguments_store_nothing(emulated, photo_path: Path, extra: list[str], expected: str) -> None:
    with pytest.raises(CommandError) as info:
        run("stage", str(photo_path), *extra)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
    assert not StagingJob.objects.exists()


def test_stage_missing_file_and_rejected_image(emulated, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="No such image file"):
        run("stage", str(tmp_path / "nope.jpg"), "--model", "flux-kontext-pro")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo")
    with pytest.raises(CommandError) as info:
        run("stage", str(text), "--model", "flux-kontext-pro")
    assert str(info.value)
    assert not StagingJob.objects.exists()
    assert emulated.counters()["creates_total"] == 0


def test_stage_without_token_names_both_ways(settings, photo_path: Path) -> None:
    settings.REPLICATE_API_TOKEN = ""
    with pytest.raises(CommandError) as info:
        run("stage", str(photo_path), "--model", "flux-kontext-pro")
    assert "REPLICATE_API_TOKEN" in str(info.value) and "--emulator" in str(info.value)
    assert not StagingJob.objects.exists()


@pytest.mark.parametrize("command", ["stage", "reprocess"])
def test_help(command: str, subprocess_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, MANAGE, command, "--help"], env=subprocess_env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "--dry-run" in result.stdout if command == "reprocess" else "--emulator" in result.stdout


def test_stage_bad_argument_exits_non_zero_with_one_line(subprocess_env: dict[str, str], photo_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, MANAGE, "stage", str(photo_path), "--model", "nope"],
        env={**subprocess_env, "REPLICATE_API_TOKEN": "r8_x"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("CommandError: Unknown model 'nope'")


# --- reprocess -----------------------------------------------------------------------------------


def _finish(job: StagingJob, state: str = "failed") -> None:
    Attempt.objects.filter(job=job).update(state=state, error="boom" if state == "failed" else "")


def test_reprocess_dry_run_prints_inputs_and_costs_and_changes_nothing(emulated, make_job) -> None:
    flux, seedream = make_job("flux-kontext-pro"), make_job("seedream-4", style="rustic")
    _finish(flux), _finish(seedream)
    creates = emulated.counters()["creates_total"]
    out = run("reprocess", str(flux.pk), str(seedream.pk), "--dry-run", "--config", '{"aspect_ratio": "16:9"}')

    assert "estimated $0.04" in out and "estimated $0.03" in out
    assert "estimated total $0.07" in out
    blocks = [json.loads(block) for block in _json_blocks(out)]
    assert blocks[0]["aspect_ratio"] == "16:9" and "input_image" in blocks[0]
    assert "rustic" in blocks[1]["prompt"] and "image_input" in blocks[1] and "seed" not in blocks[1]
    assert Attempt.objects.count() == 2
    assert StagingJob.objects.get(pk=flux.pk).config_override is None
    assert emulated.counters()["creates_total"] == creates


def _json_blocks(out: str) -> list[str]:
    blocks, current = [], None
    for line in out.splitlines():
        if line == "{":
            current = [line]
        elif current is not None:
            current.append(line)
            if line == "}":
                blocks.append("\n".join(current))
                current = None
    return blocks


def test_reprocess_yes_adds_an_attempt_per_job(emulated, make_job) -> None:
    jobs = [make_job(), make_job()]
    for job in jobs:
        _finish(job, "failed")
    running = make_job()
    Attempt.objects.filter(job=running).update(state="processing")

    out = run("reprocess", "--status", "failed", "--yes")
    for job in jobs:
        assert list(job.attempts.values_list("number", flat=True)) == [1, 2]
        assert f"Job {job.pk}: attempt 2 queued." in out
    assert running.attempts.count() == 1
    assert "2 of 2 job(s) reprocessed" in out


def test_reprocess_wait_runs_in_process(emulated, make_job) -> None:
    job = make_job()
    _finish(job, "canceled")
    out = run("reprocess", str(job.pk), "--yes", "--wait", "--config", '{"output_format": "jpg"}')
    attempt = job.attempts.get(number=2)
    assert attempt.state == "succeeded" and attempt.input["output_format"] == "jpg"
    *_, stored, summary = out.strip().splitlines()
    assert Path(stored).is_file()
    assert summary == "Done: 1 succeeded, 0 failed, 0 canceled; actual cost $0.04 (estimated $0.04)."
    assert attempt.cost == Decimal("0.04")


def test_reprocess_errors_and_empty_selection(emulated, make_job) -> None:
    job = make_job()
    _finish(job, "succeeded")
    with pytest.raises(CommandError, match=r"Unknown job id\(s\): 999999"):
        run("reprocess", str(job.pk), "999999", "--yes")
    with pytest.raises(CommandError, match="Name job ids or at least one filter"):
        run("reprocess", "--yes")
    with pytest.raises(CommandError, match="--since must be a date"):
        run("reprocess", "--since", "yesterday")
    with pytest.raises(CommandError, match=r"Nothing changed: job .*invalid config for flux-kontext-pro"):
        run("reprocess", str(job.pk), "--config", '{"output_format": "webp"}', "--yes")
    assert "nothing to reprocess" in run("reprocess", "--status", "failed", "--yes")
    assert job.attempts.count() == 1


def test_reprocess_refuses_without_tty_unless_yes(emulated, make_job, monkeypatch, settings) -> None:
    settings.STAGING_REPROCESS_CONFIRM_JOBS = 0  # one job is above the threshold
    job = make_job()
    _finish(job)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="pass --yes"):
        run("reprocess", str(job.pk))
    assert job.attempts.count() == 1


def test_a_failed_reprocess_never_shows_a_delivered_job_as_failed(emulated, make_job) -> None:
    job = make_job()
    assert drive(job) == "succeeded"
    emulated.set_faults(moderate=1)  # the reprocess is flagged: a permanent failure
    with pytest.raises(CommandError, match="did not succeed"):
        run("reprocess", str(job.pk), "--yes", "--wait")
    first, second = job.attempts.order_by("number")
    assert (first.state, second.state) == ("succeeded", "failed") and "E005" in second.error
    assert StagingJob.objects.get(pk=job.pk).status == "succeeded"  # what was delivered still stands
    assert StagingJob.objects.with_status().get(pk=job.pk).derived_status == "succeeded"
    assert not StagingJob.objects.with_status().filter(pk=job.pk, derived_status="failed").exists()


def test_a_job_whose_only_attempt_failed_is_failed(emulated, make_job) -> None:
    emulated.set_faults(moderate=1)
    job = make_job()
    assert drive(job) == "failed"
    assert StagingJob.objects.with_status().get(pk=job.pk).derived_status == "failed"
