"""Output downloads: only allowed hosts, https (except the emulator), capped, must be an image."""

from __future__ import annotations

import pytest

from staging.collect import DownloadRefused, check_url, host_allowed
from tests.fixtures.pipeline import attempts, drive


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("replicate.delivery", True),
        ("pbxt.replicate.delivery", True),
        ("a.b.replicate.delivery", True),
        ("evilreplicate.delivery", False),
        ("replicate.delivery.evil.com", False),
        ("169.254.169.254", False),
        ("", False),
    ],
)
def test_host_allow_list_with_wildcards(settings, host, allowed):
    settings.REPLICATE_OUTPUT_HOSTS = ["replicate.delivery", "*.replicate.delivery"]
    assert host_allowed(host) is allowed


def test_https_on_443_for_a_plain_host_and_the_exact_origin_for_the_emulator(settings):
    settings.REPLICATE_OUTPUT_HOSTS = ["replicate.delivery", "http://127.0.0.1:8123"]
    check_url("https://replicate.delivery/x.png")
    check_url("https://replicate.delivery:443/x.png")
    check_url("http://127.0.0.1:8123/files/outputs/a/0.png")
    with pytest.raises(DownloadRefused, match="https"):
        check_url("http://replicate.delivery/x.png")
    with pytest.raises(DownloadRefused, match="not allowed"):
        check_url("https://replicate.delivery:8443/x.png")  # the host is listed, this port is not
    for other in ("http://127.0.0.1:5432/x", "http://127.0.0.1/x", "https://127.0.0.1:8123/x"):
        with pytest.raises(DownloadRefused, match=r"allows only http://127\.0\.0\.1:8123"):
            check_url(other)


@pytest.mark.django_db(transaction=True)
def test_output_from_a_host_not_allowed_is_refused(pipeline, make_job, settings):
    settings.REPLICATE_OUTPUT_HOSTS = ["replicate.delivery", "*.replicate.delivery"]
    job = make_job()
    assert drive(job) == "failed"
    [attempt] = attempts(job)
    assert attempt.error_class == "permanent"
    assert "not in REPLICATE_OUTPUT_HOSTS" in attempt.error
    assert not attempt.images.exists()


@pytest.mark.django_db(transaction=True)
def test_output_over_the_size_cap_is_refused(pipeline, make_job, settings):
    settings.STAGING_MAX_OUTPUT_BYTES = 100
    job = make_job("qwen-image-edit")
    assert drive(job) == "failed"
    [attempt] = attempts(job)
    assert "cap" in attempt.error and not attempt.images.exists()


@pytest.mark.django_db(transaction=True)
def test_collect_is_idempotent(pipeline, make_job):
    from staging.collect import collect_outputs

    job = make_job("seedream-4")
    assert drive(job) == "succeeded"
    [attempt] = attempts(job)
    count = attempt.images.count()
    assert collect_outputs(attempt.pk).state == "succeeded"
    assert attempt.images.count() == count
