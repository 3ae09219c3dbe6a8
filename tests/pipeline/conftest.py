"""Fixtures for the command, admin and real-cluster tests: photos, emulator-backed settings, a qcluster."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from staging import services
from staging.models import StagingJob

MANAGE = str(Path(django_settings.BASE_DIR) / "manage.py")


def jpeg(size: tuple[int, int] = (96, 64), color: tuple[int, int, int] = (200, 150, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def photo_path(tmp_path: Path) -> Path:
    path = tmp_path / "room.jpg"
    path.write_bytes(jpeg())
    return path


@pytest.fixture
def emulated(pipeline):
    """This process's settings pointed at the emulator (polling mode), queue tasks run inline."""
    return pipeline


@pytest.fixture
def make_job(emulated) -> Callable[..., StagingJob]:
    def make(model: str = "flux-kontext-pro", **kwargs) -> StagingJob:
        upload = SimpleUploadedFile("room.jpg", jpeg(), content_type="image/jpeg")
        return services.create_job(upload, model, **kwargs)

    return make


class QCluster:
    """A real `manage.py qcluster` child in its own process group, stopped SIGTERM → 5 s → SIGKILL."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> QCluster:
        self.starts += 1
        log = (self.log_dir / f"qcluster-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, MANAGE, "qcluster"],
            env=self.env,
            cwd=django_settings.BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL the whole group at once: a crash, nothing gets to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass  # qcluster sometimes hangs on SIGTERM (LIBRARY-NOTES.md)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # also reaps workers left behind
            self.proc.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(self.log_dir.glob("qcluster-*.log")))


@pytest.fixture
def cluster_env(settings, emulator, live_server, subprocess_env) -> dict[str, str]:
    """This process and the qcluster child both pointed at the emulator, with webhooks to the live server."""
    hosts = ["replicate.delivery", "*.replicate.delivery", "127.0.0.1"]
    settings.REPLICATE_API_TOKEN = emulator.api_token
    settings.REPLICATE_BASE_URL = emulator.base_url
    settings.REPLICATE_WEBHOOK_SECRET = ""
    settings.REPLICATE_OUTPUT_HOSTS = hosts
    settings.STAGING_PUBLIC_URL = live_server.url
    settings.ROOT_URLCONF = "tests.staging.urls"  # serves /media/ so the emulator can fetch the photos
    env = dict(subprocess_env)
    env.update(
        REPLICATE_API_TOKEN=emulator.api_token,
        REPLICATE_BASE_URL=emulator.base_url,
        REPLICATE_WEBHOOK_SECRET="",
        REPLICATE_OUTPUT_HOSTS=",".join(hosts),
        STAGING_PUBLIC_URL=live_server.url,
        Q_WORKERS="2",
        LOG_LEVEL="INFO",
    )
    return env


@pytest.fixture
def qcluster(cluster_env, tmp_path) -> Iterator[QCluster]:
    cluster = QCluster(cluster_env, tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()
