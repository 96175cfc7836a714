from django.apps import AppConfig


class TaggingConfig(AppConfig):
    name = "tagging"
    verbose_name = "标签"

    def ready(self) -> None:
        from contacts.facts import register_facts_listener
        from contacts.services import register_merge_listener
        from tagging import services

        register_facts_listener(services.customers_mark_for_retag)
        register_merge_listener(services.MergeTags())
