"""Creates a config row with a first version for every registered model, on `post_migrate`.

Like the default site of `django.contrib.sites`: `migrate` is the one step every deploy runs, so a
new registry line is stored there and no later read (admin list, config API) has to write.
"""

from __future__ import annotations

import sys
from typing import Any

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS, router


def create_config_rows(
    app_config: AppConfig,
    verbosity: int = 2,
    interactive: bool = True,
    using: str = DEFAULT_DB_ALIAS,
    apps=global_apps,
    **kwargs: Any,
) -> None:
    if app_config.label != "models_config":
        return
    try:
        historical = apps.get_model("models_config", "ModelConfig")  # gone after `migrate models_config zero`
    except LookupError:
        return
    if not router.allow_migrate_model(using, historical):
        return
    from models_config.services import ensure_config_rows  # models are not importable before ready()

    created = ensure_config_rows(using)
    if created and verbosity >= 1:
        kwargs.get("stdout", sys.stdout).write(f"Config rows created with code defaults (v1): {', '.join(created)}\n")
