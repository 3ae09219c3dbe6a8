from django.apps import AppConfig
from django.db.models.signals import post_migrate

from .management import create_config_rows


class ModelsConfigConfig(AppConfig):
    """Per-model configuration: schemas, registry, versions, admin and config API."""

    name = "models_config"
    verbose_name = "Model configuration"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(create_config_rows, sender=self)
