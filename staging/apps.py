from django.apps import AppConfig
from django.db.models.signals import post_migrate


class StagingConfig(AppConfig):
    """Staging jobs: the pipeline from an empty-room photo to stored, staged outputs."""

    name = "staging"
    verbose_name = "Staging"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from models_config.hooks import register_metrics_reader
        from models_config.services import spend_limit_changed

        from .metrics import by_version
        from .schedules import create_schedules
        from .spend import on_limit_changed

        post_migrate.connect(create_schedules, sender=self)
        spend_limit_changed.connect(on_limit_changed, dispatch_uid="staging.spend.on_limit_changed")
        register_metrics_reader(by_version)  # the config page's metrics table (models_config/hooks.py)
