from django.apps import AppConfig
from django.core import checks


class RoutingConfig(AppConfig):
    name = "routing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the OpenAPI description of the API-key authentication.
        from routing import schema  # noqa: F401
        from routing.learned.runtime import router_artifact_check

        checks.register(router_artifact_check)
