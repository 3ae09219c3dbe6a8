from django.apps import AppConfig


class ApiConfig(AppConfig):
    """What every HTTP API shares: tokens, authentication, permissions, error answers, the ninja root."""

    name = "api"
    verbose_name = "HTTP API"
    default_auto_field = "django.db.models.BigAutoField"
