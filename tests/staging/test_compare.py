"""Comparing a job's attempts and choosing the output to deliver: the service, the jobs API and the job page."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse

from staging import delivery, selectors, services
from staging.errors import OutputNotFound
from staging.models import StagingJob
from staging.reprocessing import run_job
from tests.fixtures.users import logged_in, make_staff

pytestmark = pytest.mark.django_db(transaction=True)
API = "/api/v1/jobs"


@pytest.fixture
def reprocessed(make_job) -> StagingJob:
    """A job with two succeeded attempts, each with one stored output, run through the emulator."""
    job = make_job("flux-kontext-pro", room_type="kitchen")
    assert run_job(job.pk, timeout=20, interval=0.05).status == "succeeded"
    services.retry_job(job.pk)
    assert run_job(job.pk, timeout=20, interval=0.05).status == "succeeded"
    return StagingJob.objects.get(pk=job.pk)


def test_deliverable_defaults_to_latest_and_follows_a_choice(reprocessed: StagingJob, operator) -> None:
    first, second = (reprocessed.attempts.get(number=n).images.get() for n in (1, 2))
    assert selectors.deliverable(reprocessed) == second  # none chosen: the latest succeeded output

    delivery.choose_output(reprocessed.pk, 0, 1, user=operator)
    job = StagingJob.objects.get(pk=reprocessed.pk)
    assert job.chosen_output == first and job.chosen_by == operator and job.chosen_at is not None
    assert selectors.deliverable(job) == first
    assert list(selectors.outputs_of(job)) == [first]  # downloads and exports follow the choice

    services.retry_job(job.pk)  # a later attempt does not move the choice
    assert run_job(job.pk, timeout=20, interval=0.05).status == "succeeded"
    assert selectors.deliverable(StagingJob.objects.get(pk=job.pk)) == first


def test_choosing_needs_the_change_permission_and_an_existing_output(reprocessed: StagingJob) -> None:
    looker = make_staff("looker", "view_stagingjob")
    with pytest.raises(PermissionDenied):
        delivery.choose_output(reprocessed.pk, 0, 1, user=looker)
    assert StagingJob.objects.get(pk=reprocessed.pk).chosen_output is None
    chooser = make_staff("chooser", "change_stagingjob")
    with pytest.raises(OutputNotFound, match="no stored output 3 in attempt 1"):
        delivery.choose_output(reprocessed.pk, 3, 1, user=chooser)
    with pytest.raises(OutputNotFound, match="No job"):
        delivery.choose_output(reprocessed.pk + 100, 0, 1, user=chooser)


def test_api_lists_every_attempt_and_chooses(reprocessed: StagingJob, operator_client: Client) -> None:
    body = operator_client.get(f"{API}/{reprocessed.pk}").json()
    assert [len(a["outputs"]) for a in body["attempts"]] == [1, 1]
    assert body["chosen"]["attempt"] == 2 and not body["chosen_by_staff"]
    assert [a["outputs"][0]["chosen"] for a in body["attempts"]] == [False, True]
    old_url = body["attempts"][0]["outputs"][0]["url"]
    assert old_url.endswith(f"/jobs/{reprocessed.pk}/outputs/0?attempt=1")
    first = reprocessed.attempts.get(number=1).images.get()
    served = operator_client.get(old_url)  # attempt 1's file stays readable after a reprocess
    assert served.status_code == 200 and b"".join(served.streaming_content) == first.file.open("rb").read()

    answer = operator_client.post(f"{API}/{reprocessed.pk}/outputs/0/choose?attempt=1")
    assert answer.status_code == 200, answer.content
    chosen = answer.json()
    assert chosen["chosen"]["attempt"] == 1 and chosen["chosen_by_staff"]
    assert [o["attempt"] for o in chosen["outputs"]] == [1]
    assert [a["outputs"][0]["chosen"] for a in chosen["attempts"]] == [True, False]
    default = operator_client.get(f"{API}/{reprocessed.pk}/outputs/0")  # no ?attempt: the delivered one
    assert b"".join(default.streaming_content) == first.file.open("rb").read()

    missing = operator_client.post(f"{API}/{reprocessed.pk}/outputs/5/choose?attempt=1")
    assert missing.status_code == 404 and "no stored output 5" in missing.json()["detail"]
    assert operator_client.post(f"{API}/{reprocessed.pk}/outputs/0/choose?attempt=x").status_code == 422
    viewer = logged_in(make_staff("looker", "view_stagingjob"))
    refused = viewer.post(f"{API}/{reprocessed.pk}/outputs/0/choose?attempt=2")
    assert refused.status_code == 403
    assert StagingJob.objects.get(pk=reprocessed.pk).chosen_output == first  # nothing changed


def test_job_page_shows_every_attempt_and_chooses(reprocessed: StagingJob) -> None:
    client = logged_in(make_staff("boss", "view_stagingjob", "change_stagingjob"))
    url = reverse("admin:staging_stagingjob_change", args=[reprocessed.pk])
    html = client.get(url).content.decode()
    for number in (1, 2):
        assert f'id="attempt-{number}"' in html
        assert f"/api/v1/jobs/{reprocessed.pk}/outputs/0?attempt={number}" in html
    assert 'class="ba-slider"' in html and "staging/compare.js" in html
    assert 'value="1:0"' in html  # attempt 1's output can be chosen
    version = reprocessed.attempts.get(number=1).config_version.number
    assert f"config v{version}" in html and "$0.0400" in html

    choose = reverse("admin:staging_stagingjob_choose", args=[reprocessed.pk])
    page = client.post(choose, {"output": "1:0"}, follow=True)
    assert "Output 1 of attempt 1 will be delivered." in [str(m) for m in page.context["messages"]]
    assert StagingJob.objects.get(pk=reprocessed.pk).chosen_output.attempt.number == 1
    assert client.post(choose, {"output": "x"}).status_code == 302

    viewer = logged_in(make_staff("looker", "view_stagingjob"))
    assert 'value="2:0"' not in viewer.get(url).content.decode()  # no choose button without the permission
    refused = viewer.post(choose, {"output": "2:0"})
    assert refused.status_code == 403
    assert StagingJob.objects.get(pk=reprocessed.pk).chosen_output.attempt.number == 1
