from django.apps import AppConfig


class GenerationsConfig(AppConfig):
    name = "generations"
    verbose_name = "Generations"

    def ready(self) -> None:
        from generations import checks  # noqa: F401 - registers the deploy checks
