"""`manage.py reprocess`: every filter and option, preflight before spending, confirmation thresholds,
the `--wait` summary with the actual cost, reprocessing onto another model, and two runs at once."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django_q.conf import Conf

from models_config.models import ModelConfigVersion
from models_config.services import save_version, set_daily_spend_limit
from staging import emulation, reprocessing
from staging.emulation import emulator_environ
from staging.models import Attempt, StagingJob
from tests.fixtures.pipeline import drive

from .conftest import MANAGE

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("reprocess", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _finish(*jobs: StagingJob, state: str = "failed") -> None:
    Attempt.objects.filter(job__in=jobs).update(state=state, error="boom" if state == "failed" else "")


def _created_on(job: StagingJob, day: str) -> None:
    StagingJob.objects.filter(pk=job.pk).update(created_at=datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC))


@pytest.fixture
def no_serve_record(tmp_path, monkeypatch) -> None:
    """No `serve` running beside this test may lend it a back end."""
    monkeypatch.setattr(emulation, "runtime_path", lambda: tmp_path / emulation.RUNTIME_FILE)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "nope"], "invalid choice: 'nope'"),
        (["--to-model", "nope"], "invalid choice: 'nope'"),
        (["--config-version", "99"], "flux-kontext-pro has no stored config version 99."),
        (["--to-model", "seedream-4", "--config-version", "5"], "seedream-4 has no stored config version 5."),
        (["--config-version", "abc"], "--config-version must be 'active' or a version number, got 'abc'."),
        (["--config-version", "0"], "--config-version must be 'active' or a version number, got '0'."),
        (["--limit", "0"], "--limit must be a positive whole number of jobs, got '0'."),
        (["--limit", "-3"], "--limit must be a positive whole number of jobs, got '-3'."),
        (["--since", "2026-02-01", "--until", "2026-01-31"], "--until 2026-01-31 is before --since 2026-02-01"),
        (["--until", "tomorrow"], "--until must be a date like 2025-01-31, got 'tomorrow'."),
        (["--config", "{not json"], "--config is not valid JSON"),
        (["--config", "[1]"], "--config must be a JSON object"),
        (["999999"], r"Unknown job id(s): 999999."),
        (["--config", '{"output_format": "webp"}'], "invalid config for flux-kontext-pro: output_format"),
        (["--to-model", "seedream-4", "--config", '{"output_format": "jpg"}'], "invalid config for seedream-4"),
    ],
)
def test_bad_arguments_are_one_line_and_create_nothing(emulated, make_job, extra, message) -> None:
    job = make_job()
    _finish(job)
    jobs, attempts = StagingJob.objects.count(), Attempt.objects.count()
    with pytest.raises(CommandError) as raised:
        run(*(extra if extra[0].isdigit() else [str(job.pk), *extra]), "--yes")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert (StagingJob.objects.count(), Attempt.objects.count()) == (jobs, attempts)


def test_config_version_for_jobs_of_several_models_is_ambiguous(emulated, make_job) -> None:
    flux, seedream = make_job(), make_job("seedream-4")
    _finish(flux, seedream)
    with pytest.raises(CommandError, match="--config-version 1 is ambiguous for jobs of flux-kontext-pro, seedream-4"):
        run("--status", "failed", "--config-version", "1", "--yes")
    assert Attempt.objects.count() == 2


def test_since_until_and_limit_select_by_day_and_newest(emulated, make_job) -> None:
    jobs = [make_job() for _ in range(4)]
    _finish(*jobs)
    for job, day in zip(jobs, ["2026-01-10", "2026-01-11", "2026-01-12", "2026-01-13"], strict=True):
        _created_on(job, day)

    out = run("--since", "2026-01-11", "--until", "2026-01-12", "--dry-run")
    assert f"Job {jobs[1].pk} " in out and f"Job {jobs[2].pk} " in out
    assert f"Job {jobs[0].pk} " not in out and f"Job {jobs[3].pk} " not in out
    assert "Dry run: 2 job(s), estimated total $0.08." in out

    out = run("--status", "failed", "--limit", "2", "--yes")
    assert "2 of 2 job(s) reprocessed" in out
    assert [job.attempts.count() for job in jobs] == [1, 1, 2, 2]  # the two newest

    assert "No job matches; nothing to reprocess." in run("--until", "2025-12-31", "--yes")


def test_config_version_runs_that_stored_version_with_the_override_on_top(emulated, make_job) -> None:
    job = make_job()
    _finish(job)
    save_version("flux-kontext-pro", {"aspect_ratio": "16:9"}, author=None, comment="wide", base_version=1)
    v1 = ModelConfigVersion.objects.get(model_config__slug="flux-kontext-pro", number=1)

    dry = run(str(job.pk), "--config-version", "1", "--dry-run")
    assert "config v1" in dry and '"aspect_ratio": "match_input_image"' in dry

    run(str(job.pk), "--config-version", "1", "--config", '{"output_format": "jpg"}', "--yes", "--wait")
    attempt = job.attempts.get(number=2)
    assert attempt.state == "succeeded"
    assert (attempt.config_version_id, attempt.pinned_version_id) == (v1.pk, v1.pk)
    assert attempt.input["aspect_ratio"] == "match_input_image"  # v1, not the active v2
    assert attempt.input["output_format"] == "jpg"  # the override on top

    run(str(job.pk), "--config-version", "active", "--yes", "--wait")
    latest = job.attempts.get(number=3)
    assert latest.input["aspect_ratio"] == "16:9" and latest.pinned_version_id is None


def test_a_stored_version_that_no_longer_validates_is_refused_before_anything(emulated, make_job) -> None:
    job = make_job()
    _finish(job)
    save_version("flux-kontext-pro", {"aspect_ratio": "16:9"}, author=None, comment="wide", base_version=1)
    ModelConfigVersion.objects.filter(model_config__slug="flux-kontext-pro", number=2).update(
        config={"aspect_ratio": "7:3"}
    )
    with pytest.raises(CommandError, match=f"Nothing changed: job {job.pk}: invalid config for flux-kontext-pro"):
        run(str(job.pk), "--config-version", "2", "--yes")
    assert job.attempts.count() == 1


def test_to_model_stages_the_photo_again_as_a_new_linked_job(emulated, make_job) -> None:
    source = make_job("flux-kontext-pro", style="rustic", config_override={"output_format": "jpg"})
    assert drive(source) == "succeeded"
    jobs = StagingJob.objects.count()

    dry = run(str(source.pk), "--to-model", "seedream-4", "--dry-run")
    assert "-> new job on seedream-4" in dry and "estimated total $0.03" in dry
    assert StagingJob.objects.count() == jobs

    out = run(str(source.pk), "--to-model", "seedream-4", "--yes", "--wait")
    copy = StagingJob.objects.get(reprocessed_from=source)
    assert f"Job {source.pk}: new job {copy.pk} on seedream-4 queued." in out
    assert (copy.model_slug, copy.style, copy.config_override) == ("seedream-4", "rustic", None)
    assert copy.status == "succeeded" and "image_input" in copy.attempts.get().input
    assert copy.photo.name != source.photo.name
    assert copy.photo.read() == source.photo.read()  # its own copy: purging one job keeps the other's photo
    assert source.attempts.count() == 1 and StagingJob.objects.get(pk=source.pk).status == "succeeded"
    assert "Done: 1 succeeded, 0 failed, 0 canceled; actual cost $0.03 (estimated $0.03)." in out


def test_dry_run_writes_nothing_and_prints_the_total(emulated, make_job) -> None:
    jobs = [make_job(), make_job()]
    _finish(*jobs)
    creates = emulated.counters()["creates_total"]
    out = run("--status", "failed", "--dry-run")
    assert out.strip().splitlines()[-1] == "Dry run: 2 job(s), estimated total $0.08. Nothing was changed."
    assert Attempt.objects.count() == 2 and emulated.counters()["creates_total"] == creates


def test_below_the_thresholds_it_proceeds_without_asking_after_printing_the_estimate(
    emulated, make_job, monkeypatch, settings
) -> None:
    settings.STAGING_REPROCESS_CONFIRM_JOBS, settings.STAGING_REPROCESS_CONFIRM_COST = 2, Decimal("0.10")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # no terminal
    jobs = [make_job(), make_job()]
    _finish(*jobs)
    out = run("--status", "failed")
    assert "Add a new attempt to 2 job(s), estimated total $0.08." in out
    assert [job.attempts.count() for job in jobs] == [2, 2]


@pytest.mark.parametrize(("jobs_limit", "cost_limit"), [(1, "5"), (10, "0.05")])
def test_above_a_threshold_it_refuses_without_a_terminal_unless_yes(
    emulated, make_job, monkeypatch, settings, jobs_limit, cost_limit
) -> None:
    settings.STAGING_REPROCESS_CONFIRM_JOBS, settings.STAGING_REPROCESS_CONFIRM_COST = jobs_limit, Decimal(cost_limit)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    jobs = [make_job(), make_job()]
    _finish(*jobs)
    with pytest.raises(CommandError, match=r"estimated total \$0.08: confirmation needed .* pass --yes"):
        run("--status", "failed")
    assert Attempt.objects.count() == 2
    run("--status", "failed", "--yes")
    assert Attempt.objects.count() == 4


def test_without_a_token_nothing_is_created_and_a_delivered_job_stays_succeeded(
    emulated, make_job, settings, no_serve_record
) -> None:
    job = make_job()
    assert drive(job) == "succeeded"
    settings.REPLICATE_API_TOKEN = ""
    with pytest.raises(CommandError, match=r"^Nothing changed: REPLICATE_API_TOKEN is not set"):
        run(str(job.pk), "--yes", "--wait")
    assert job.attempts.count() == 1
    assert StagingJob.objects.get(pk=job.pk).status == "succeeded"
    assert emulated.counters()["creates_total"] == 1


def test_preflight_refuses_what_the_spend_cap_would_hold(emulated, make_job) -> None:
    """Over the model's daily cap, nothing is created: the new attempts would only wait as held."""
    job = make_job()
    assert drive(job) == "succeeded"  # $0.04 spent today
    set_daily_spend_limit(job.model_slug, Decimal("0.05"), actor=None, comment="test cap")
    with pytest.raises(CommandError, match=r"^Nothing changed: .*daily"):
        run(str(job.pk), "--yes")
    assert job.attempts.count() == 1
    assert emulated.counters()["creates_total"] == 1
    set_daily_spend_limit(job.model_slug, Decimal("0.08"), actor=None, comment="room for one more")
    run(str(job.pk), "--yes")
    assert job.attempts.count() == 2


def test_wait_summary_counts_outcomes_and_sums_the_actual_cost(emulated, make_job) -> None:
    good, bad = make_job(), make_job()
    _finish(good, bad, state="canceled")
    out = io.StringIO()
    emulated.set_faults(moderate=1)  # the first new prediction is flagged: a permanent failure
    with pytest.raises(CommandError, match="1 job\\(s\\) did not succeed"):
        call_command("reprocess", str(good.pk), str(bad.pk), "--yes", "--wait", stdout=out, stderr=io.StringIO())
    spent = sum(a.cost or 0 for a in Attempt.objects.filter(number=2))
    assert f"Done: 1 succeeded, 1 failed, 0 canceled; actual cost ${spent:.2f} (estimated $0.08)." in out.getvalue()
    assert spent == Decimal("0.04")


def test_a_stale_plan_adds_nothing(emulated, make_job) -> None:
    """The run that planned before another run's attempt ended must not add a second one."""
    job = make_job()
    _finish(job)
    (plan,) = reprocessing.plan_all(list(reprocessing.select_jobs([job.pk])))
    reprocessing.start(plan)
    _finish(job)  # the other run's attempt already ended
    with pytest.raises(Exception, match="was reprocessed meanwhile"):
        reprocessing.start(plan)
    assert job.attempts.count() == 2


def test_two_concurrent_runs_give_each_job_one_new_attempt(emulated, make_job, monkeypatch) -> None:
    """Two runs in threads (a database connection each) that planned the same jobs, then start each job at the
    same moment: one wins, the other says so in a line per job."""
    jobs = [make_job() for _ in range(4)]
    _finish(*jobs)
    monkeypatch.setattr(Conf, "SYNC", False)  # the new attempts stay queued: nothing ends them meanwhile
    barrier = threading.Barrier(2)
    real_start = reprocessing.start

    def together(plan, *args, **kwargs):
        barrier.wait(timeout=30)  # both runs have planned every job, and reach this one together
        return real_start(plan, *args, **kwargs)

    monkeypatch.setattr(reprocessing, "start", together)
    results: list[tuple[str, str, str]] = []

    def one_run() -> None:
        out, err = io.StringIO(), io.StringIO()
        try:
            call_command("reprocess", *[str(job.pk) for job in jobs], "--yes", stdout=out, stderr=err)
            failure = ""
        except CommandError as exc:
            failure = str(exc)
        finally:
            connection.close()
        results.append((out.getvalue(), err.getvalue(), failure))

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert [job.attempts.count() for job in jobs] == [2] * 4
    assert sum(out.count(": attempt 2 queued.") for out, _err, _failure in results) == 4, results
    assert sum(err.count("not reprocessed") for _out, err, _failure in results) == 4, results
    for _out, err, failure in results:
        if "not reprocessed" in err:
            assert failure.endswith("job(s) could not be reprocessed (see above).")


def test_two_manage_py_runs_at_once_never_add_a_second_attempt(emulated, make_job, subprocess_env) -> None:
    jobs = [make_job() for _ in range(6)]
    _finish(*jobs)
    env = {**subprocess_env, **emulator_environ(emulated)}
    command = [sys.executable, MANAGE, "reprocess", *[str(job.pk) for job in jobs], "--yes"]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    runs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [(*proc.communicate(timeout=120), proc.returncode) for proc in runs]

    assert [job.attempts.count() for job in jobs] == [2] * 6
    assert sum(out.count(": attempt 2 queued.") for out, _err, _code in results) == 6, results
    for _out, err, code in results:
        assert "Traceback" not in err
        assert code == (1 if "not reprocessed" in err else 0), results


def _run_on_a_terminal(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run `command` with a pseudo-terminal as stdin, stdout and stderr; its exit status and everything it drew."""
    main, child = pty.openpty()
    proc = subprocess.Popen(command, env=env, stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_a_progress_bar_with_counts_on_a_terminal_and_none_without(emulated, make_job, subprocess_env) -> None:
    jobs = [make_job(), make_job()]
    _finish(*jobs)
    env = {**subprocess_env, **emulator_environ(emulated), "COLUMNS": "100", "TERM": "xterm"}
    ids = [str(job.pk) for job in jobs]
    code, drawn = _run_on_a_terminal([sys.executable, MANAGE, "reprocess", *ids, "--yes"], env)
    assert code == 0, drawn
    assert "Creating attempts" in drawn and "2/2" in drawn
    assert "2 of 2 job(s) reprocessed" in drawn

    _finish(*jobs)
    piped = subprocess.run(
        [sys.executable, MANAGE, "reprocess", *ids, "--yes"], env=env, capture_output=True, text=True, timeout=60
    )
    assert piped.returncode == 0, piped.stderr
    assert "Creating attempts" not in piped.stdout and "\x1b[" not in piped.stdout
    assert piped.stdout.strip().splitlines()[-1] == "2 of 2 job(s) reprocessed, estimated $0.08."
