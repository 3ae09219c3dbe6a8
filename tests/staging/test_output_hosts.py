"""`REPLICATE_OUTPUT_HOSTS` pins scheme and port, not only the host (staging/collect.py).

A plain host entry allows https on 443; the emulator's entry is its exact origin, so an output URL can
never name another port of the emulator's host (a database, the admin) or reach it over another scheme.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings

from staging.collect import DownloadRefused, check_url, host_allowed


def default_hosts(base_url: str) -> list[str]:
    """The setting's default as a fresh process computes it from `REPLICATE_BASE_URL`."""
    env = {k: v for k, v in os.environ.items() if k != "REPLICATE_OUTPUT_HOSTS"}
    env.update(REPLICATE_BASE_URL=base_url, DJANGO_SETTINGS_MODULE="stagingsite.settings")
    code = "import json; from django.conf import settings; print(json.dumps(settings.REPLICATE_OUTPUT_HOSTS))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=django_settings.BASE_DIR, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_default_adds_the_emulators_exact_origin() -> None:
    replicate = ["replicate.delivery", "*.replicate.delivery"]
    assert default_hosts("https://api.replicate.com") == replicate
    assert default_hosts("http://127.0.0.1:8787") == [*replicate, "http://127.0.0.1:8787"]
    assert default_hosts("http://emulator.internal") == [*replicate, "http://emulator.internal:80"]
    assert default_hosts("http://[::1]:8787/") == [*replicate, "http://[::1]:8787"]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://replicate.delivery/a.png", True),
        ("https://pbxt.replicate.delivery/a.png", True),
        ("https://pbxt.replicate.delivery:443/a.png", True),
        ("https://pbxt.replicate.delivery:8443/a.png", False),
        ("http://pbxt.replicate.delivery/a.png", False),
        ("http://127.0.0.1:8787/files/a.png", True),
        ("http://127.0.0.1:8788/files/a.png", False),
        ("http://127.0.0.1:80/files/a.png", False),
        ("https://127.0.0.1:8787/files/a.png", False),
        ("http://[::1]:8787/files/a.png", True),
        ("http://[::1]:6379/", False),
        ("https://photos.example:9443/a.png", True),  # a host:port entry: https on that port
        ("https://photos.example/a.png", False),
        ("ftp://replicate.delivery/a.png", False),
    ],
)
def test_scheme_host_and_port_must_all_match_an_entry(url: str, allowed: bool, settings) -> None:
    settings.REPLICATE_OUTPUT_HOSTS = [
        "replicate.delivery",
        "*.replicate.delivery",
        "http://127.0.0.1:8787",
        "http://[::1]:8787",
        "photos.example:9443",
    ]
    if allowed:
        check_url(url)
    else:
        with pytest.raises(DownloadRefused):
            check_url(url)


def test_the_refusal_names_what_the_entry_allows(settings) -> None:
    settings.REPLICATE_OUTPUT_HOSTS = ["replicate.delivery", "http://127.0.0.1:8787"]
    with pytest.raises(DownloadRefused) as info:
        check_url("http://127.0.0.1:5432/x")
    assert str(info.value).startswith("Output URL http://127.0.0.1:5432 is not allowed")
    assert "allows only http://127.0.0.1:8787" in str(info.value)
    with pytest.raises(DownloadRefused, match="not in REPLICATE_OUTPUT_HOSTS"):
        check_url("https://elsewhere.example/x")
    with pytest.raises(DownloadRefused, match="not a valid URL"):
        check_url("http://127.0.0.1:99999/x")


def test_blank_and_malformed_entries_allow_nothing(settings) -> None:
    settings.REPLICATE_OUTPUT_HOSTS = ["", " ", "gopher://127.0.0.1:70", "http://:8787", "http://127.0.0.1:99999"]
    assert not host_allowed("127.0.0.1")
    with pytest.raises(DownloadRefused, match="not in REPLICATE_OUTPUT_HOSTS"):
        check_url("http://127.0.0.1:8787/x")
