from django.apps import AppConfig


class SopConfig(AppConfig):
    name = "sop"
    verbose_name = "SOP"

    def ready(self) -> None:
        from contacts.facts import register_facts_listener
        from contacts.services import register_merge_listener
        from scrm.wecom.events import register
        from sop import services

        # After contacts (10) stored the relationship and campaigns (20) welcomed them.
        register(
            event="change_external_contact",
            change_type="add_external_contact",
            handler=services.contact_added,
            order=30,
        )
        register_facts_listener(services.customers_mark_for_triggers)
        register_facts_listener(services.tasks_stop_unfollowed)
        register_facts_listener(services.tasks_stop_on_purchase)
        register_merge_listener(services.MergeTouchpoints())
