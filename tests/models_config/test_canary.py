"""The canary: start, promote, stop (services and API), the uid rule that picks a job's arm, and the cache.

The arm tests through the real pipeline are in tests/staging/test_canary_arms.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from models_config import canary, selectors, services
from models_config.models import ConfigEvent, ModelConfig, ModelConfigVersion
from tests.fixtures.config_rows import changed_config

from .conftest import SLUG

pytestmark = pytest.mark.django_db
BASE = f"/api/v1/admin/models/{SLUG}/config"


@pytest.fixture
def two_versions(rows, editor: User) -> User:
    """v1 (defaults), v2 (a change, active); returns the editor who saved v2."""
    services.save_version(SLUG, changed_config(SLUG, "v2"), author=editor, comment="v2")
    return editor


def row() -> ModelConfig:
    return ModelConfig.objects.select_related("active_version", "candidate_version").get(slug=SLUG)


def pointers() -> tuple[int | None, int | None, Decimal]:
    current = row()
    return (
        current.active_version.number if current.active_version_id else None,
        current.candidate_version.number if current.candidate_version_id else None,
        current.canary_share,
    )


# --- the uid rule --------------------------------------------------------------------------------


def test_the_arm_depends_on_the_uid_alone_and_follows_the_share() -> None:
    uids = [uuid.uuid4() for _ in range(1000)]
    arms = [selectors.arm_for(uid, Decimal("0.2")) for uid in uids]
    assert arms == [selectors.arm_for(str(uid), Decimal("0.2")) for uid in uids]  # the same, as text
    share = arms.count("candidate") / len(uids)
    assert 0.16 <= share <= 0.24, share  # 1000 draws at p=0.2: a standard deviation of 0.0126
    # a larger share keeps every job the smaller one took (buckets are fixed, the threshold moves)
    taken = {uid for uid, arm in zip(uids, arms, strict=True) if arm == "candidate"}
    assert taken <= {uid for uid in uids if selectors.arm_for(uid, Decimal("0.5")) == "candidate"}
    assert {selectors.arm_for(uid, Decimal("1")) for uid in uids} == {"candidate"}
    assert {selectors.arm_for(uid, Decimal("0")) for uid in uids} == {"active"}


def test_another_process_puts_the_same_jobs_on_the_same_arms(subprocess_env) -> None:
    uids = [str(uuid.uuid4()) for _ in range(50)]
    code = (
        "import json, sys; from decimal import Decimal; from models_config.selectors import arm_for; "
        f"print(json.dumps([arm_for(u, Decimal('0.5')) for u in {uids!r}]))"
    )
    env = {**subprocess_env, "PYTHONHASHSEED": "12345"}  # Python's own hash would differ; ours must not
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        env=env,
        cwd=settings.BASE_DIR,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    there = json.loads(done.stdout.strip().splitlines()[-1])
    assert there == [selectors.arm_for(uid, Decimal("0.5")) for uid in uids]
    assert set(there) == {"active", "candidate"}


# --- services ------------------------------------------------------------------------------------


def test_start_promote_and_stop_move_the_pointers_with_an_event_each(two_versions: User) -> None:
    editor = two_versions
    canary.start_canary(SLUG, 1, "0.25", actor=editor, comment="try v1 again")
    assert pointers() == (2, 1, Decimal("0.250"))
    canary.start_canary(SLUG, 1, Decimal("0.5"), actor=editor, comment="more traffic")
    assert pointers() == (2, 1, Decimal("0.500"))
    stopped = canary.stop_canary(SLUG, actor=editor, comment="enough")
    assert stopped.number == 1 and pointers() == (2, None, Decimal("0"))
    canary.start_canary(SLUG, 1, "0.1", actor=editor, comment="once more")
    promoted = canary.promote_canary(SLUG, actor=editor, comment="v1 wins")
    assert promoted.number == 1 and pointers() == (1, None, Decimal("0"))

    events = list(selectors.events_of(SLUG))[:5]  # newest first
    assert [(e.kind, e.version.number, e.actor, e.comment) for e in events] == [
        ("canary_promote", 1, editor, "v1 wins"),
        ("canary_start", 1, editor, "once more"),
        ("canary_stop", 1, editor, "enough"),
        ("canary_start", 1, editor, "more traffic"),
        ("canary_start", 1, editor, "try v1 again"),
    ]
    assert events[3].data == {"share": "0.500", "replaced_version": 1, "replaced_share": "0.250"}
    assert ModelConfigVersion.objects.filter(model_config__slug=SLUG).count() == 2  # promote copies nothing


@pytest.mark.parametrize(
    ("number", "share", "comment", "field"),
    [
        pytest.param(1, "-0.1", "why", "share", id="negative-share"),
        pytest.param(1, "1.5", "why", "share", id="share-over-1"),
        pytest.param(1, "0", "why", "share", id="zero-share"),
        pytest.param(1, "NaN", "why", "share", id="nan-share"),
        pytest.param(9, "0.2", "why", "version", id="unknown-version"),
        pytest.param(2, "0.2", "why", "version", id="the-active-version"),
        pytest.param(1, "0.2", "  ", "comment", id="no-comment"),
    ],
)
def test_a_bad_start_is_refused_on_its_field_and_changes_nothing(two_versions, number, share, comment, field) -> None:
    before = (pointers(), ConfigEvent.objects.count())
    with pytest.raises(services.ConfigValidationError) as info:
        canary.start_canary(SLUG, number, share, actor=two_versions, comment=comment)
    assert [error["loc"] for error in info.value.errors] == [[field]] and info.value.loc_prefix == ()
    assert (pointers(), ConfigEvent.objects.count()) == before


def test_a_candidate_that_no_longer_validates_is_refused(two_versions) -> None:
    ModelConfigVersion.objects.filter(model_config__slug=SLUG, number=1).update(config={"output_quality": 999})
    with pytest.raises(services.ConfigValidationError, match="no longer validates"):
        canary.start_canary(SLUG, 1, "0.2", actor=two_versions, comment="why")
    assert pointers() == (2, None, Decimal("0"))


def test_promote_or_stop_without_a_canary_is_a_conflict(two_versions) -> None:
    for act in (canary.promote_canary, canary.stop_canary):
        with pytest.raises(canary.NoCanaryError, match="runs no canary"):
            act(SLUG, actor=two_versions, comment="why")
    assert not ConfigEvent.objects.filter(kind__startswith="canary").exists()


def test_activating_the_candidate_is_promoting_it(two_versions) -> None:
    canary.start_canary(SLUG, 1, "0.3", actor=two_versions, comment="try")
    services.activate_version(SLUG, 1, actor=two_versions, comment="looks good")
    assert pointers() == (1, None, Decimal("0"))
    latest = selectors.events_of(SLUG).first()
    assert (latest.kind, latest.version.number, latest.comment) == ("canary_promote", 1, "looks good")


def test_a_save_while_a_canary_runs_stops_it_and_says_so(two_versions) -> None:
    canary.start_canary(SLUG, 1, "0.3", actor=two_versions, comment="try")
    services.save_version(SLUG, changed_config(SLUG, "v3"), author=two_versions, comment="hotfix")
    assert pointers() == (3, None, Decimal("0"))
    saved, stopped = list(selectors.events_of(SLUG))[:2]
    assert (saved.kind, saved.version.number, saved.comment) == ("save", 3, "hotfix")
    assert (stopped.kind, stopped.version.number, stopped.actor) == ("canary_stop", 1, two_versions)
    assert "v3 became active" in stopped.comment


# --- reading: config_for_job and the cache -------------------------------------------------------


def test_config_for_job_follows_the_uid_rule(two_versions, django_capture_on_commit_callbacks) -> None:
    uids = [uuid.uuid4() for _ in range(40)]
    assert {selectors.config_for_job(SLUG, uid).version_number for uid in uids} == {2}
    with django_capture_on_commit_callbacks(execute=True):
        canary.start_canary(SLUG, 1, "0.5", actor=two_versions, comment="half")
    for uid in uids:
        chosen = selectors.config_for_job(SLUG, uid)
        expected = selectors.arm_for(uid, Decimal("0.5"))
        assert (chosen.arm, chosen.version_number) == (expected, 1 if expected == "candidate" else 2)
    assert selectors.get_active_config(SLUG).version_number == 2  # the active config is still v2


def test_a_broken_candidate_takes_no_jobs(two_versions, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        canary.start_canary(SLUG, 1, "1", actor=two_versions, comment="all")
    ModelConfigVersion.objects.filter(model_config__slug=SLUG, number=1).update(config={"output_quality": 999})
    selectors.invalidate(SLUG)
    chosen = selectors.config_for_job(SLUG, uuid.uuid4())
    assert (chosen.arm, chosen.version_number) == ("active", 2)


def test_a_steady_state_read_with_a_canary_runs_no_query(two_versions, django_assert_num_queries) -> None:
    canary.start_canary(SLUG, 1, "0.5", actor=two_versions, comment="half")
    selectors.config_for_job(SLUG, uuid.uuid4())
    with django_assert_num_queries(0):
        for _ in range(100):
            selectors.config_for_job(SLUG, uuid.uuid4())


@pytest.mark.django_db(transaction=True)
def test_a_canary_started_in_another_process_is_seen_within_a_second(subprocess_env, monkeypatch) -> None:
    clock = SimpleNamespace(now=time.monotonic())  # the cache's clock: it moves only when this test says so
    monkeypatch.setattr(selectors, "time", SimpleNamespace(monotonic=lambda: clock.now))
    services.ensure_config_rows()
    services.save_version(SLUG, changed_config(SLUG, "v2"), author=None, comment="two")
    job = uuid.uuid4()
    assert selectors.config_for_job(SLUG, job).version_number == 2

    def elsewhere(code: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", f"from models_config import canary; {code}"],
            env=subprocess_env,
            cwd=settings.BASE_DIR,
            check=True,
            capture_output=True,
            timeout=60,
        )

    elsewhere(f"canary.start_canary({SLUG!r}, 1, '1', actor=None, comment='all jobs to v1')")
    assert selectors.config_for_job(SLUG, job).version_number == 2  # still trusted from the cache
    clock.now += settings.MODELS_CONFIG_CACHE_SECONDS + 0.05
    assert (selectors.config_for_job(SLUG, job).arm, selectors.config_for_job(SLUG, job).version_number) == (
        "candidate",
        1,
    )

    elsewhere(f"canary.stop_canary({SLUG!r}, actor=None, comment='back')")
    assert selectors.config_for_job(SLUG, job).version_number == 1
    clock.now += settings.MODELS_CONFIG_CACHE_SECONDS + 0.05
    assert selectors.config_for_job(SLUG, job).version_number == 2


# --- the API ---------------------------------------------------------------------------------------


def put_canary(client: Client, body: dict, slug: str = SLUG):
    return client.put(f"/api/v1/admin/models/{slug}/config/canary", json.dumps(body), "application/json")


def test_the_api_starts_shows_promotes_a_canary(two_versions, editor_client: Client) -> None:
    response = put_canary(editor_client, {"version": 1, "share": 0.2, "comment": "try v1"})
    assert response.status_code == 200, response.content
    assert response.json()["canary"] == {"version": 1, "share": "0.200"}
    assert editor_client.get(BASE).json()["canary"] == {"version": 1, "share": "0.200"}
    listed = {item["slug"]: item for item in editor_client.get("/api/v1/admin/models/").json()}
    assert listed[SLUG]["canary"] == {"version": 1, "share": "0.200"}  # the list shows it too
    assert all(item["canary"] is None for slug, item in listed.items() if slug != SLUG)
    response = editor_client.post(f"{BASE}/canary/promote", {"comment": "ship it"}, "application/json")
    assert response.status_code == 200
    assert (response.json()["version"], response.json()["canary"]) == (1, None)
    events = editor_client.get(f"{BASE}/events").json()
    assert [(e["kind"], e["version"], e["actor"], e["comment"]) for e in events[:2]] == [
        ("canary_promote", 1, "editor", "ship it"),
        ("canary_start", 1, "editor", "try v1"),
    ]
    assert events[1]["data"] == {"share": "0.200"}


@pytest.mark.parametrize("how", ["body", "query"])
def test_the_api_stops_a_canary_with_a_comment_in_the_body_or_the_query(two_versions, editor_client, how) -> None:
    put_canary(editor_client, {"version": 1, "share": "0.5", "comment": "try"})
    if how == "body":
        response = editor_client.delete(f"{BASE}/canary", json.dumps({"comment": "stop"}), "application/json")
    else:
        response = editor_client.delete(f"{BASE}/canary?comment=stop")
    assert (response.status_code, response.json()["canary"]) == (200, None)
    assert selectors.events_of(SLUG).first().comment == "stop"
    again = editor_client.delete(f"{BASE}/canary?comment=stop")
    assert again.status_code == 409 and "runs no canary" in again.json()["detail"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param({"version": 1, "share": -0.1, "comment": "x"}, ["body", "share"], id="share-negative"),
        pytest.param({"version": 1, "share": 1.5, "comment": "x"}, ["body", "share"], id="share-over-1"),
        pytest.param({"version": 1, "share": "x", "comment": "x"}, ["body", "payload", "share"], id="share-nan"),
        pytest.param({"version": 9, "share": 0.2, "comment": "x"}, ["body", "version"], id="unknown-version"),
        pytest.param({"version": 2, "share": 0.2, "comment": "x"}, ["body", "version"], id="active-version"),
        pytest.param({"version": 1, "share": 0.2}, ["body", "payload", "comment"], id="no-comment"),
        pytest.param({"version": 1, "share": 0.2, "comment": " "}, ["body", "comment"], id="blank-comment"),
    ],
)
def test_a_bad_canary_is_422_on_its_field(two_versions, editor_client, body, loc) -> None:
    response = put_canary(editor_client, body)
    assert response.status_code == 422, response.content
    assert [error["loc"] for error in response.json()["detail"]] == [loc]
    assert pointers() == (2, None, Decimal("0")) and not ConfigEvent.objects.filter(kind="canary_start").exists()


def test_the_api_answers_unknown_models_missing_canaries_and_viewers(two_versions, editor_client, viewer) -> None:
    response = put_canary(editor_client, {"version": 1, "share": 0.2, "comment": "x"}, slug="no-such-model")
    assert response.status_code == 404
    promote = editor_client.post(f"{BASE}/canary/promote", {"comment": "x"}, "application/json")
    assert promote.status_code == 409 and "runs no canary" in promote.json()["detail"]
    from tests.fixtures.users import logged_in

    as_viewer = logged_in(viewer)
    assert put_canary(as_viewer, {"version": 1, "share": 0.2, "comment": "x"}).status_code == 403
    assert as_viewer.get(f"{BASE}/events").status_code == 200
    assert pointers() == (2, None, Decimal("0"))
