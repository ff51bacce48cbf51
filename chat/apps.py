from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat import access, attachments, configuration  # noqa: F401 (configuration registers its checks)

        access.connect_signals()
        attachments.connect_signals()
