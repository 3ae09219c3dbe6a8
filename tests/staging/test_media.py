"""Stored files are never anonymous: permission-checked file endpoints, and signed, expiring links for Replicate."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import signing
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.test import Client
from django.utils import timezone

from staging import derivatives, storage
from staging.models import Attempt, DerivativeKind, StagedImage, StagingJob
from tests.fixtures.photos import image_bytes
from tests.fixtures.users import logged_in

pytestmark = pytest.mark.django_db
PUBLIC = "https://staging.example"
ORIGINAL = image_bytes(size=(64, 48), color=(10, 20, 30))
OUTPUT = image_bytes("PNG", size=(300, 200))


@pytest.fixture
def output(db) -> StagedImage:
    """A job with its original, one stored PNG output of a succeeded attempt and that output's thumbnail."""
    job = StagingJob(model_slug="flux-kontext-pro")
    job.photo.save("original.jpg", ContentFile(ORIGINAL), save=False)
    job.save()
    attempt = Attempt.objects.create(job=job, number=1, state=Attempt.State.SUCCEEDED)
    image = StagedImage(
        attempt=attempt,
        index=0,
        source_url="https://replicate.delivery/x/output.png",
        content_type="image/png",
        size=len(OUTPUT),
        checksum=hashlib.sha256(OUTPUT).hexdigest(),
        width=300,
        height=200,
    )
    image.file.save("output-0.png", ContentFile(OUTPUT), save=False)
    image.save()
    derivatives.make_derivative(image, DerivativeKind.THUMBNAIL)
    return image


def file_urls(job_id: int) -> list[str]:
    base = f"/api/v1/jobs/{job_id}"
    return [f"{base}/original", f"{base}/outputs/0", f"{base}/outputs/0?label=none", f"{base}/outputs/0/thumbnail"]


def body(response) -> bytes:
    return b"".join(response.streaming_content)


# --- people: the jobs API's file endpoints ------------------------------------------------------------


def test_anonymous_gets_no_file_from_any_url(client: Client, output: StagedImage) -> None:
    job = output.attempt.job
    for url in file_urls(job.pk):
        response = client.get(url)
        assert response.status_code == 401, url
        assert "detail" in response.json()
    # Django's MEDIA_URL serves nothing, not the original, the output or the thumbnail
    thumbnail = derivatives.get_derivative(output, DerivativeKind.THUMBNAIL)
    for name in (job.photo.name, output.file.name, thumbnail.file.name):
        assert client.get(f"/media/{name}").status_code == 404
        assert client.get(default_storage.url(name)).status_code == 404


def test_staff_with_the_view_permission_gets_the_stored_bytes(operator_client: Client, output: StagedImage) -> None:
    job = output.attempt.job
    original = operator_client.get(f"/api/v1/jobs/{job.pk}/original")
    assert original.status_code == 200 and original["Content-Type"] == "image/jpeg"
    assert body(original) == ORIGINAL == job.photo.open("rb").read()
    staged = operator_client.get(f"/api/v1/jobs/{job.pk}/outputs/0", {"label": "none"})
    assert staged.status_code == 200 and staged["Content-Type"] == "image/png"
    assert body(staged) == OUTPUT
    assert "private" in staged["Cache-Control"]
    thumb = operator_client.get(f"/api/v1/jobs/{job.pk}/outputs/0/thumbnail")
    assert thumb.status_code == 200
    assert body(thumb) == derivatives.get_derivative(output, DerivativeKind.THUMBNAIL).file.open("rb").read()


def test_a_personal_token_reads_files_like_the_session(operator: User, token_for, output: StagedImage) -> None:
    client = Client(headers={"Authorization": f"Bearer {token_for(operator)}"})
    response = client.get(f"/api/v1/jobs/{output.attempt.job_id}/outputs/0")
    assert response.status_code == 200 and body(response) == OUTPUT
    bad = Client(headers={"Authorization": "Bearer stg_not-a-token"})
    assert bad.get(f"/api/v1/jobs/{output.attempt.job_id}/outputs/0").status_code == 401


def test_staff_without_the_permission_and_non_staff_are_refused(
    staff_no_perm: User, non_staff: User, token_for, output: StagedImage
) -> None:
    """Somebody else's job is not theirs to see: the same 404 as an unknown id (docs/architecture.md#who-sees-a-job)."""
    for user in (staff_no_perm, non_staff):
        for client in (logged_in(user), Client(headers={"Authorization": f"Bearer {token_for(user)}"})):
            for url in file_urls(output.attempt.job_id):
                assert client.get(url).status_code == 404, (user, url)


def test_unknown_jobs_outputs_kinds_and_labels(operator_client: Client, output: StagedImage) -> None:
    job_id = output.attempt.job_id
    assert operator_client.get(f"/api/v1/jobs/{job_id + 100}/original").json() == {"detail": f"No job {job_id + 100}."}
    assert operator_client.get(f"/api/v1/jobs/{job_id + 100}/outputs/0").status_code == 404
    missing = operator_client.get(f"/api/v1/jobs/{job_id}/outputs/3")
    assert missing.status_code == 404 and "no stored output 3" in missing.json()["detail"]
    label = operator_client.get(f"/api/v1/jobs/{job_id}/outputs/0", {"label": "bold"})
    assert label.status_code == 422 and label.json()["detail"][0]["loc"][-1] == "label"
    assert operator_client.get(f"/api/v1/jobs/{job_id}/outputs/0/poster").status_code == 422
    output.derivatives.all().delete()
    gone = operator_client.get(f"/api/v1/jobs/{job_id}/outputs/0/thumbnail")
    assert gone.status_code == 404 and "no thumbnail" in gone.json()["detail"]


def test_only_the_latest_succeeded_attempts_outputs_are_served(operator_client: Client, output: StagedImage) -> None:
    """The same outputs the job's JSON lists: a failed later attempt leaves them readable, none of its own."""
    Attempt.objects.create(job=output.attempt.job, number=2, state=Attempt.State.FAILED)
    assert operator_client.get(f"/api/v1/jobs/{output.attempt.job_id}/outputs/0").status_code == 200
    Attempt.objects.filter(pk=output.attempt_id).update(state=Attempt.State.CANCELED)
    assert operator_client.get(f"/api/v1/jobs/{output.attempt.job_id}/outputs/0").status_code == 404


def test_a_file_missing_from_storage_is_a_404_not_a_500(operator_client: Client, output: StagedImage) -> None:
    default_storage.delete(output.file.name)
    response = operator_client.get(f"/api/v1/jobs/{output.attempt.job_id}/outputs/0")
    assert response.status_code == 404 and response.json() == {"detail": "The file is missing from storage."}


def test_the_job_json_links_to_the_file_endpoints(operator_client: Client, output: StagedImage) -> None:
    job_id = output.attempt.job_id
    job = operator_client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["photo"]["url"] == f"http://testserver/api/v1/jobs/{job_id}/original"
    (listed,) = job["outputs"]
    assert listed["url"] == f"http://testserver/api/v1/jobs/{job_id}/outputs/0?attempt=1"
    thumbnail = f"http://testserver/api/v1/jobs/{job_id}/outputs/0/thumbnail?attempt=1"
    assert listed["thumbnail_url"] == listed["derivatives"]["thumbnail"] == thumbnail
    for url in (job["photo"]["url"], listed["url"], listed["thumbnail_url"]):
        assert operator_client.get(url).status_code == 200
        assert Client().get(url).status_code == 401


def test_the_admin_shows_images_through_the_permission_checked_urls(output: StagedImage) -> None:
    boss = User.objects.create_superuser("boss", "boss@example.com", "pw-not-used")
    admin = logged_in(boss)
    job = output.attempt.job
    html = admin.get(f"/admin/staging/stagingjob/{job.pk}/change/").content.decode()
    urls = [f"/api/v1/jobs/{job.pk}/original", f"/api/v1/jobs/{job.pk}/outputs/0?attempt=1"]
    for url in urls:
        assert f'src="{url}"' in html
        assert admin.get(url).status_code == 200  # the admin's session is enough for the API
    assert f'href="/api/v1/jobs/{job.pk}/outputs/0?attempt=1"' in html
    assert "/media/" not in html


def test_the_admin_blanks_the_signature_of_the_recorded_photo_link(settings, output: StagedImage) -> None:
    settings.STAGING_PUBLIC_URL = PUBLIC
    link = storage.public_url(output.attempt.job.photo)
    token = parse_qs(urlsplit(link).query)["sig"][0]
    Attempt.objects.filter(pk=output.attempt_id).update(input={"input_image": link, "prompt": "a sofa"})
    admin = logged_in(User.objects.create_superuser("boss", "boss@example.com", "pw-not-used"))
    html = admin.get(f"/admin/staging/stagingjob/{output.attempt.job_id}/change/").content.decode()
    assert "a sofa" in html and "sig=[redacted]" in html
    assert token not in html and token.rsplit(":", 1)[-1] not in html


# --- Replicate: signed, expiring links ------------------------------------------------------------------


def test_a_signed_link_works_anonymously_until_it_expires(settings, client: Client, output: StagedImage) -> None:
    settings.STAGING_PUBLIC_URL = PUBLIC
    settings.STAGING_SIGNED_URL_SECONDS = 3600
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        link = storage.public_url(output.attempt.job.photo)
        assert link.startswith(f"{PUBLIC}/files/original.jpg?sig=")
        path = link.removeprefix(PUBLIC)
        response = client.get(path)
        assert response.status_code == 200 and body(response) == ORIGINAL
        assert response["Content-Type"] == "image/jpeg"
        clock.shift(timedelta(seconds=3599))
        assert client.get(path).status_code == 200
        clock.shift(timedelta(seconds=2))
        expired = client.get(path)
        assert expired.status_code == 403 and expired.json() == {"detail": "This link has expired."}


def test_a_tampered_or_foreign_token_is_refused(settings, client: Client, output: StagedImage) -> None:
    settings.STAGING_PUBLIC_URL = PUBLIC
    path = storage.public_url(output.attempt.job.photo).removeprefix(PUBLIC)
    token = parse_qs(urlsplit(path).query)["sig"][0]
    payload, stamp, signature = token.split(":")
    other_name = signing.TimestampSigner(salt="staging.storage.signed-file").sign_object(output.file.name)
    other_payload = other_name.split(":")[0]
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    later = signing.b62_encode(signing.b62_decode(stamp) + 9999)
    refused = {
        "no token": "/files/original.jpg",
        "flipped signature": f"/files/original.jpg?sig={payload}:{stamp}:{flipped}",
        "another file's payload": f"/files/original.jpg?sig={other_payload}:{stamp}:{signature}",
        "a later timestamp": f"/files/original.jpg?sig={payload}:{later}:{signature}",
        "another name in the path": f"/files/output-0.png?sig={token}",
        "a token for another purpose": f"/files/original.jpg?sig={signing.dumps(output.attempt.job.photo.name)}",
    }
    for what, url in refused.items():
        response = client.get(url)
        assert response.status_code == 403, what
        assert response.json() == {"detail": "This link is not valid."}, what


def test_a_signed_link_to_a_deleted_file_is_a_404(settings, client: Client, output: StagedImage) -> None:
    settings.STAGING_PUBLIC_URL = PUBLIC
    path = storage.public_url(output.file).removeprefix(PUBLIC)
    assert body(client.get(path)) == OUTPUT
    default_storage.delete(output.file.name)
    assert client.get(path).status_code == 404


def test_the_signed_view_only_reads(settings, client: Client, output: StagedImage) -> None:
    settings.STAGING_PUBLIC_URL = PUBLIC
    path = storage.public_url(output.attempt.job.photo).removeprefix(PUBLIC)
    assert client.post(path).status_code == 405
    assert client.head(path).status_code == 200


def test_a_storage_with_its_own_absolute_urls_is_used_as_it_is(settings, monkeypatch, output: StagedImage) -> None:
    """An S3 or GCS storage presigns its own URLs: they go to Replicate unchanged, no service link."""
    settings.STAGING_PUBLIC_URL = PUBLIC
    presigned = "https://bucket.s3.amazonaws.com/staging/originals/x/original.jpg?X-Amz-Signature=abc"
    monkeypatch.setattr(FileSystemStorage, "url", lambda self, name: presigned)
    assert storage.image_url_for_replicate(output.attempt.job.photo, "image/jpeg") == presigned


def test_signatures_are_blanked_in_text() -> None:
    text = (
        "Failed to fetch 'https://s.example/files/a.jpg?sig=eyJ:1x:AbC' and "
        "https://b.s3.amazonaws.com/k?X-Amz-Signature=f00&X-Amz-Security-Token=t0k&x=1"
    )
    assert storage.redact_signatures(text) == (
        "Failed to fetch 'https://s.example/files/a.jpg?sig=[redacted]' and "
        "https://b.s3.amazonaws.com/k?X-Amz-Signature=[redacted]&X-Amz-Security-Token=[redacted]&x=1"
    )
