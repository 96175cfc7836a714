from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "活动"

    def ready(self) -> None:
        from campaigns import services
        from scrm.wecom.events import register, register_fast

        # The welcome message has 20 s: its own task, not behind contacts' re-read.
        register_fast(
            event="change_external_contact",
            change_type="add_external_contact",
            handler=services.welcome_send,
        )
        register(
            event="change_external_contact",
            change_type="add_external_contact",
            handler=services.code_joined,
            order=20,
        )
