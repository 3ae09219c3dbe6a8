"""The admin workbench through the test client: the cost shown and confirmed first, jobs created at once,
the live status view, the listing page's actions (stage all, reprocess with the cost confirmed), permissions."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from models_config.registry import get_spec
from staging import listings
from staging.models import Attempt, Listing, StagingJob
from tests.fixtures.photos import image_bytes, upload
from tests.fixtures.pipeline import drive
from tests.fixtures.users import JOB_PERMS, logged_in, make_staff

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("_loopback_only")]
ADD = "admin:staging_stagingjob_add"
MODEL = "flux-kontext-pro"


@pytest.fixture
def staff(db) -> Client:
    return logged_in(make_staff("bench", *JOB_PERMS))


def photos(n: int) -> list:
    return [upload(image_bytes(color=(60 * i, 100, 160)), name=f"room{i}.jpg") for i in range(n)]


def price(n: int, model: str = MODEL) -> Decimal:
    return get_spec(model).estimate_cost(get_spec(model).default_config()) * n


def test_upload_page_shows_prices_and_the_estimate_view_prices_the_choice(staff, pipeline) -> None:
    page = staff.get(reverse(ADD))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'type="file"' in html and "multiple" in html and "staging/workbench.js" in html
    assert f"{MODEL} ${price(1):.2f}" in html  # the cost per photo is on the page before anything is sent
    answer = staff.get(reverse("admin:staging_stagingjob_estimate"), {"model": MODEL, "photos": 3}).json()
    assert Decimal(answer["total"]) == price(3) and answer["display"] == f"${price(3):.2f}"
    bad = staff.get(reverse("admin:staging_stagingjob_estimate"), {"model": "dall-e", "photos": 3})
    assert bad.status_code == 422 and "Unknown model" in bad.json()["detail"]


def test_a_post_without_the_confirmed_cost_creates_nothing_and_shows_the_cost(staff, pipeline) -> None:
    page = staff.post(reverse(ADD), {"model": MODEL, "style": "modern", "images": photos(3)})
    assert page.status_code == 200
    assert f"costs up to ${price(3):.2f}" in page.content.decode()
    stale = staff.post(
        reverse(ADD), {"model": MODEL, "style": "modern", "images": photos(3), "estimated_cost": str(price(2))}
    )
    assert f"costs up to ${price(3):.2f}" in stale.content.decode()
    assert not StagingJob.objects.exists() and not Listing.objects.exists()


def test_confirmed_upload_of_three_photos_creates_a_listing_and_shows_its_jobs(staff, pipeline) -> None:
    response = staff.post(
        reverse(ADD),
        {
            "name": "7 Oak Ave",
            "model": MODEL,
            "style": "mid-century",
            "images": photos(3),
            "room_types": ["living room", "bedroom", "bathroom"],
            "estimated_cost": str(price(3)),
        },
    )
    listing = Listing.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "admin:staging_listing_change", args=[listing.pk]
    )
    jobs = list(listing.jobs.order_by("pk"))
    assert [job.room_type for job in jobs] == ["living room", "bedroom", "bathroom"]
    assert {job.style for job in jobs} == {"mid-century"}
    # Whoever uploads owns the jobs, as through the API: it decides who may see them.
    assert {job.created_by.username for job in jobs} == {"bench"} and listing.created_by.username == "bench"
    page = staff.get(response["Location"]).content.decode()
    assert all(f'data-job="{job.pk}"' in page for job in jobs)  # the jobs appear at once
    assert "staging/live.js" in page and "Export clean" in page

    status_url = reverse("admin:staging_stagingjob_workbench_status")
    ids = ",".join(str(job.pk) for job in jobs)
    for job in jobs:
        assert drive(job) == "succeeded"
    answer = staff.get(status_url, {"ids": ids}).json()
    assert answer["done"] is True and [row["status"] for row in answer["jobs"]] == ["succeeded"] * 3
    first = answer["jobs"][0]["outputs"][0]
    assert staff.get(first["clean"]).status_code == 200
    labelled = staff.get(first["labelled"])
    assert labelled.status_code == 200
    assert b"".join(labelled.streaming_content) != b"".join(staff.get(first["clean"]).streaming_content)
    job_page = staff.get(reverse("admin:staging_stagingjob_change", args=[jobs[0].pk])).content.decode()
    assert "(labelled)" in job_page and "(clean)" in job_page and ">original<" in job_page


def test_one_photo_without_a_name_is_a_single_job(staff, pipeline) -> None:
    response = staff.post(
        reverse(ADD), {"model": MODEL, "style": "modern", "images": photos(1), "estimated_cost": str(price(1))}
    )
    job = StagingJob.objects.get()
    assert job.listing is None and job.created_by.username == "bench"
    assert response.status_code == 302 and f"ids={job.pk}" in response["Location"]
    page = staff.get(response["Location"]).content.decode()
    assert f'data-job="{job.pk}"' in page


def test_a_bad_photo_is_reported_and_nothing_is_stored(staff, pipeline) -> None:
    files = [*photos(2), upload(b"plain text", name="notes.txt", content_type="text/plain")]
    page = staff.post(
        reverse(ADD),
        {"name": "L", "model": MODEL, "style": "modern", "images": files, "estimated_cost": str(price(3))},
        follow=True,
    )
    assert page.status_code == 200 and "Nothing was staged: images.2:" in page.content.decode()
    assert not StagingJob.objects.exists() and not Listing.objects.exists()


def test_reprocess_all_asks_for_the_cost_before_it_runs(staff, pipeline) -> None:
    listing = listings.create_listing("L", MODEL, [listings.Photo(file) for file in photos(2)])
    for job in listing.jobs.all():
        assert drive(job) == "succeeded"
    url = reverse("admin:staging_listing_reprocess", args=[listing.pk])
    asked = staff.post(url, {"model": "seedream-4", "style": "industrial"})
    html = asked.content.decode()
    assert f"costs up to <strong>${price(2, 'seedream-4'):.2f}</strong>" in html
    assert Attempt.objects.filter(number=2).count() == 0  # nothing queued before the confirmation
    confirmed = {"model": "seedream-4", "style": "industrial", "confirmed_cost": str(price(2, "seedream-4"))}
    done = staff.post(url, confirmed)
    assert done.status_code == 302
    assert Attempt.objects.filter(number=2).count() == 2
    listing.refresh_from_db()
    assert (listing.model_slug, listing.style) == ("seedream-4", "industrial")


def test_stage_all_action(staff, pipeline) -> None:
    listing = listings.create_listing("L", MODEL, [listings.Photo(file) for file in photos(2)])
    job = listing.jobs.first()
    Attempt.objects.filter(job=job).update(state="failed", error="E005")
    Attempt.objects.exclude(job=job).update(state="succeeded")
    page = staff.post(
        reverse("admin:staging_listing_changelist"),
        {"action": "stage_all", "_selected_action": [listing.pk]},
        follow=True,
    )
    assert "1 photo(s) queued again" in page.content.decode()
    assert job.attempts.count() == 2


def test_permissions(pipeline) -> None:
    viewer = logged_in(make_staff("viewer2", "view_stagingjob"))
    assert viewer.get(reverse(ADD)).status_code == 403
    assert viewer.get(reverse("admin:staging_stagingjob_estimate"), {"model": MODEL}).status_code == 403
    listing = Listing.objects.create(name="L", model_slug=MODEL)
    assert viewer.get(reverse("admin:staging_listing_change", args=[listing.pk])).status_code == 200
    assert viewer.post(reverse("admin:staging_listing_reprocess", args=[listing.pk])).status_code == 403
    bare = logged_in(make_staff("bare3"))
    assert bare.get(reverse("admin:staging_stagingjob_workbench_status"), {"ids": "1"}).status_code == 403
    assert bare.get(reverse("admin:staging_listing_change", args=[listing.pk])).status_code == 403


def test_adding_photos_to_a_listing_keeps_its_model_and_style(staff, pipeline) -> None:
    listing = listings.create_listing("L", MODEL, [listings.Photo(photos(1)[0])], style="rustic")
    url = f"{reverse(ADD)}?listing={listing.pk}"
    assert "The photos join" in staff.get(url).content.decode()
    response = staff.post(
        url,
        # A tampered model or style is ignored: the listing's apply, and so does its price.
        {"model": "seedream-4", "style": "gaudy", "images": photos(2), "estimated_cost": str(price(2))},
    )
    assert response.status_code == 302
    jobs = list(listing.jobs.order_by("pk"))
    assert len(jobs) == 3 and {(job.model_slug, job.style, job.seed) for job in jobs} == {
        (MODEL, "rustic", listing.seed)
    }
    assert [job.created_by and job.created_by.username for job in jobs] == [None, "bench", "bench"]
    assert Listing.objects.count() == 1


def test_export_actions_hand_over_to_the_permission_checked_export(staff, pipeline) -> None:
    listing = listings.create_listing("L", MODEL, [listings.Photo(photos(1)[0])])
    for action, label in (("export_clean", "none"), ("export_labelled", "default")):
        response = staff.post(
            reverse("admin:staging_listing_changelist"), {"action": action, "_selected_action": [listing.pk]}
        )
        assert response.status_code == 302
        assert response["Location"] == f"/api/v1/listings/{listing.pk}/export?label={label}"
        assert staff.get(response["Location"]).status_code == 200
