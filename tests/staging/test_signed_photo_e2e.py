"""With DEBUG off and a public URL, a whole job succeeds: the emulator downloads the photo through its signed link.

Before signed links the photo URL was `/media/…`, which Django serves only in debug, so every job failed.
The public server here is the project's WSGI application alone: unlike pytest-django's `live_server`
(Django's LiveServerThread serves MEDIA_URL by itself) it serves no file that the project does not.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

from staging import selectors
from staging.models import StagedImage
from tests.fixtures.loopback import loopback_server
from tests.fixtures.pipeline import attempts
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def public_url(pipeline, settings) -> Iterator[str]:
    """Debug off, the project's URLconf on a real server that is the public URL (webhooks on)."""
    settings.DEBUG = False
    settings.ROOT_URLCONF = "stagingsite.urls"
    settings.STAGING_POLL_AFTER_SECONDS = 60  # only webhooks move the job forward
    with loopback_server(QuietHandler, ThreadedWSGIServer, WSGIHandler()) as base:
        settings.STAGING_PUBLIC_URL = base
        yield base


def test_a_job_succeeds_with_the_photo_fetched_through_its_signed_link(public_url, pipeline, make_job):
    job = make_job("flux-kontext-pro")
    assert wait_until(lambda: selectors.get_job(job.pk).status == "succeeded", timeout=15)
    (attempt,) = attempts(job)
    link = attempt.input["input_image"]
    assert link.startswith(f"{public_url}/files/original.jpg?sig=")
    prediction = pipeline.get_prediction(attempt.prediction_id)
    assert prediction["status"] == "succeeded" and prediction["input"]["input_image"] == link
    assert StagedImage.objects.filter(attempt=attempt).count() == 1

    # The link is what opens the photo: cut short, at the media path, or through the API anonymously, nothing.
    assert httpx.get(link).content == job.photo.open("rb").read()
    assert parse_qs(urlsplit(link).query)["sig"][0].count(":") == 2  # payload:timestamp:signature
    assert httpx.get(link[:-2]).status_code == 403  # the signature cut short
    assert httpx.get(f"{public_url}/media/{job.photo.name}").status_code == 404
    assert httpx.get(f"{public_url}/api/v1/jobs/{job.pk}/original").status_code == 401


def test_debug_mode_does_not_serve_media_either(subprocess_env):
    """The old `static(MEDIA_URL…)` route existed only with DEBUG on, so check the URLconf of a debug process."""
    code = (
        "import django; django.setup()\n"
        "from django.conf import settings; from django.urls import Resolver404, resolve\n"
        "assert settings.DEBUG\n"
        "try:\n"
        "    resolve(settings.MEDIA_URL + 'staging/originals/x/original.jpg')\n"
        "except Resolver404:\n"
        "    print('no route')\n"
    )
    env = {**subprocess_env, "DJANGO_DEBUG": "true"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no route"
