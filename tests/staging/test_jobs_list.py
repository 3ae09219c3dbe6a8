"""`GET /api/v1/jobs` (filters, pages, 422s, no query per row) and who may see which job (`visible_jobs`).

Jobs are rows made here with attempts in the states a filter needs; the one created through the API
shows that `created_by` is recorded, and the commands' jobs (no creator) are only for staff.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.test import Client

from staging.models import Attempt, Listing, StagedImage, StagingJob
from tests.fixtures.photos import image_bytes, upload
from tests.fixtures.users import JOB_PERMS, logged_in, make_staff

pytestmark = pytest.mark.django_db
URL = "/api/v1/jobs"
DAY = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def job_row(owner: User | None = None, *, model: str = "flux-kontext-pro", state: str | None = "queued", at=DAY):
    """A job with a stored photo, created `at`, whose one attempt (if any) is in `state`."""
    job = StagingJob(model_slug=model, created_by=owner, photo_width=64, photo_height=48)
    job.photo.save("original.jpg", ContentFile(image_bytes()), save=False)
    job.save()
    StagingJob.objects.filter(pk=job.pk).update(created_at=at)
    if state is not None:
        Attempt.objects.create(job=job, number=1, state=state)
    return job


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["items"]]


def locs(response) -> list[tuple]:
    assert response.status_code == 422, response.content
    return [tuple(error["loc"]) for error in response.json()["detail"]]


@pytest.fixture
def staff_viewer() -> User:
    return make_staff("watcher", "view_stagingjob")


@pytest.fixture
def alice() -> User:
    """May create jobs, not view everyone's: sees her own."""
    return make_staff("alice", "add_stagingjob")


@pytest.fixture
def bob() -> User:
    """Not staff at all: sees his own (made for him here), may create none."""
    return User.objects.create_user("bob", password="pw-bob")


# --- the list --------------------------------------------------------------------------------------


def test_lists_newest_first_with_the_derived_status_and_pages(staff_viewer) -> None:
    old = job_row(state="succeeded", at=DAY - timedelta(days=2))
    failed_later_with_output = job_row(state="failed", at=DAY - timedelta(days=1))
    StagedImage.objects.create(
        attempt=Attempt.objects.create(job=failed_later_with_output, number=0, state="succeeded"),
        index=0,
        source_url="https://replicate.delivery/x.png",
        file="x.png",
        content_type="image/png",
        size=1,
        checksum="0" * 64,
        width=1,
        height=1,
    )
    new = job_row(state=None, at=DAY)
    client = logged_in(staff_viewer)

    body = client.get(URL).json()
    assert [item["id"] for item in body["items"]] == [new.pk, failed_later_with_output.pk, old.pk]
    assert [item["status"] for item in body["items"]] == ["queued", "succeeded", "succeeded"]
    assert (body["count"], body["page"], body["pages"]) == (3, 1, 1)
    item = body["items"][0]
    assert item["url"].endswith(f"{URL}/{new.pk}") and item["created_by"] is None
    assert item["model"] == "flux-kontext-pro"

    second = client.get(URL, {"page_size": 2, "page": 2}).json()
    assert [item["id"] for item in second["items"]] == [old.pk]
    assert (second["count"], second["page"], second["pages"]) == (3, 2, 2)
    beyond = client.get(URL, {"page_size": 2, "page": 9})
    assert beyond.status_code == 200 and beyond.json() == {"items": [], "count": 3, "page": 9, "pages": 2}


def test_filters_by_status_model_and_time(staff_viewer) -> None:
    running = job_row(state="processing", at=DAY - timedelta(hours=1))
    failed = job_row(state="failed", model="seedream-4", at=DAY)
    canceled = job_row(state="canceled", at=DAY + timedelta(hours=1))
    client = logged_in(staff_viewer)

    assert ids(client.get(URL, {"status": "running"})) == [running.pk]
    assert ids(client.get(URL, {"status": "failed"})) == [failed.pk]
    assert ids(client.get(URL, {"model": "seedream-4"})) == [failed.pk]
    assert ids(client.get(URL, {"model": "flux-kontext-pro", "status": "canceled"})) == [canceled.pk]
    assert ids(client.get(URL, {"since": DAY.isoformat()})) == [canceled.pk, failed.pk]  # since: inclusive
    assert ids(client.get(URL, {"until": DAY.isoformat()})) == [running.pk]  # until: exclusive
    assert ids(client.get(URL, {"since": "2026-03-10", "until": "2026-03-10T12:30:00"})) == [failed.pk, running.pk]
    assert client.get(URL, {"status": "succeeded"}).json()["count"] == 0


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "done"}, [("query", "status")]),
        ({"model": "no-such-model"}, [("query", "model")]),
        ({"since": "yesterday"}, [("query", "since")]),
        ({"since": "2026-03-10", "until": "2026-03-09"}, [("query", "until")]),
        ({"page": 0}, [("query", "page")]),
        ({"page_size": 101}, [("query", "page_size")]),
        ({"page_size": "many", "status": "x"}, [("query", "status"), ("query", "page_size")]),
    ],
)
def test_bad_filters_are_422_per_parameter(staff_viewer, params, expected) -> None:
    response = logged_in(staff_viewer).get(URL, params)
    assert sorted(locs(response)) == sorted(expected)
    assert all(error["msg"] for error in response.json()["detail"])


def test_no_query_per_row(staff_viewer, alice, django_assert_max_num_queries) -> None:
    client = logged_in(staff_viewer)
    job_row(alice, state="succeeded")
    client.get(URL)  # warms the session and permission caches of this client's user

    def queries_for_a_page() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            assert client.get(URL, {"page_size": 100}).status_code == 200
        return len(captured)

    few = queries_for_a_page()
    for index in range(12):
        job_row(alice if index % 2 else None, state=("queued", "failed", "succeeded")[index % 3])
    assert queries_for_a_page() == few  # 13 rows cost what 1 row did
    with django_assert_max_num_queries(8):  # session, user, permissions, count, the page
        client.get(URL, {"page_size": 100, "status": "failed"})


# --- who sees what ----------------------------------------------------------------------------------


def test_each_user_sees_their_own_and_staff_see_all(staff_viewer, alice, bob) -> None:
    hers, his, commands = job_row(alice), job_row(bob), job_row(None)
    assert ids(logged_in(alice).get(URL)) == [hers.pk]
    assert ids(logged_in(bob).get(URL)) == [his.pk]
    assert sorted(ids(logged_in(staff_viewer).get(URL))) == sorted([hers.pk, his.pk, commands.pk])
    assert logged_in(make_staff("bare")).get(URL).json()["count"] == 0


def test_another_users_job_is_404_everywhere(alice, bob) -> None:
    hers = job_row(alice, state="failed")
    his = job_row(bob, state="failed")
    client = logged_in(alice)
    assert client.get(f"{URL}/{hers.pk}").status_code == 200
    assert client.get(f"{URL}/{hers.pk}/original").status_code == 200
    for path in (f"{URL}/{his.pk}", f"{URL}/{his.pk}/original", f"{URL}/{his.pk}/outputs/0"):
        response = client.get(path)
        assert response.status_code == 404 and response.json() == {"detail": f"No job {his.pk}."}
    # The same answer as for an id that does not exist: ids reveal nothing.
    assert client.get(f"{URL}/999999").json() == {"detail": "No job 999999."}


def test_acting_on_a_job_needs_its_permission_and_sight(alice) -> None:
    """Reprocess and cancel need `change_stagingjob` (403 otherwise, whatever the id); with it, an unknown id is 404."""
    hers = job_row(alice, state="failed")
    for action in ("reprocess", "cancel"):
        response = logged_in(alice).post(f"{URL}/{hers.pk}/{action}")
        assert response.status_code == 403 and "staging.change_stagingjob" in response.json()["detail"]
        changer = logged_in(make_staff(f"changer-{action}", "change_stagingjob"))
        assert changer.post(f"{URL}/999999/{action}").status_code == 404
    assert Attempt.objects.filter(job=hers).count() == 1


def test_created_by_is_recorded_through_the_api_and_shown(settings) -> None:
    settings.REPLICATE_API_TOKEN = "r8_not_used"  # nothing reaches Replicate: the submit runs on commit
    creator = make_staff("creator", "add_stagingjob")
    response = logged_in(creator).post(URL, {"image": upload(), "model": "flux-kontext-pro"})
    assert response.status_code == 201, response.content
    job = StagingJob.objects.get(pk=response.json()["id"])
    assert job.created_by == creator and response.json()["created_by"] == "creator"
    listed = logged_in(creator).get(URL).json()["items"]
    assert [(item["id"], item["created_by"]) for item in listed] == [(job.pk, "creator")]
    # Someone else who may create jobs but not view everyone's does not see it.
    assert logged_in(make_staff("other", *JOB_PERMS[:1])).get(f"{URL}/{job.pk}").status_code == 404


def test_anonymous_is_401() -> None:
    assert Client().get(URL).status_code == 401


def test_the_admin_shows_who_created_a_job(alice) -> None:
    job = job_row(alice)
    page = logged_in(make_staff("root", is_superuser=True)).get(f"/admin/staging/stagingjob/{job.pk}/change/")
    assert page.status_code == 200
    assert "Created by" in page.content.decode() and ">alice<" in page.content.decode()


def test_listing_filter_and_tries_left_out(staff_viewer) -> None:
    listing = Listing.objects.create(name="12 Elm St", style="modern", model_slug="flux-kontext-pro")
    in_listing, loose, a_try = job_row(), job_row(), job_row()
    StagingJob.objects.filter(pk=in_listing.pk).update(listing=listing)
    StagingJob.objects.filter(pk=a_try.pk).update(is_try=True)
    client = logged_in(staff_viewer)
    assert ids(client.get(URL, {"listing": listing.pk})) == [in_listing.pk]
    assert client.get(URL, {"listing": listing.pk}).json()["items"][0]["listing"] == listing.pk
    assert sorted(ids(client.get(URL))) == sorted([in_listing.pk, loose.pk])  # the playground's try is not listed
    assert locs(client.get(URL, {"listing": "x"})) == [("query", "listing")]


def test_times_with_any_offset_are_read_in_utc(staff_viewer) -> None:
    """ISO 8601 allows offsets PostgreSQL refuses (past ±15:59): they are converted, never a 500."""
    job = job_row()
    client = logged_in(staff_viewer)
    assert ids(client.get(URL, {"since": "2026-03-10T00:00:00-18:24"})) == []  # 18:24 UTC, after the job
    assert ids(client.get(URL, {"since": "2026-03-09T23:00:00+18:00"})) == [job.pk]  # 05:00 UTC
    assert locs(client.get(URL, {"until": "0001-01-01T00:00:00+01:00"})) == [("query", "until")]
