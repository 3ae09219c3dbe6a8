from django.apps import AppConfig


class StagingConfig(AppConfig):
    """Staging jobs: the pipeline from an empty-room photo to stored, staged outputs."""

    name = "staging"
    verbose_name = "Staging"
    default_auto_field = "django.db.models.BigAutoField"
