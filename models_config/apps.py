from django.apps import AppConfig


class ModelsConfigConfig(AppConfig):
    """Per-model configuration: schemas, registry, versions, admin and config API."""

    name = "models_config"
    verbose_name = "Model configuration"
    default_auto_field = "django.db.models.BigAutoField"
