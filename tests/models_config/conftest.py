"""Fixtures for the config admin and API tests: the config rows (users come from tests/fixtures/users.py)."""

from __future__ import annotations

import pytest

from models_config import services
from models_config.models import ModelConfig

SLUG = "qwen-image-edit"


@pytest.fixture
def rows(db) -> dict[str, ModelConfig]:
    services.ensure_config_rows()
    return {row.slug: row for row in ModelConfig.objects.all()}
