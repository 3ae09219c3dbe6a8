"""Argument parsing shared by the staging commands, so they word their errors the same way."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError


def parse_config_option(raw: str | None) -> dict[str, Any] | None:
    """`--config JSON`: a config override as a JSON object, or None when the option is absent."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--config is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
    if not isinstance(value, dict):
        raise CommandError('--config must be a JSON object, e.g. \'{"aspect_ratio": "16:9"}\'.')
    return value
