from django.apps import AppConfig


class TaggingConfig(AppConfig):
    name = "tagging"
    verbose_name = "标签"

    def ready(self) -> None:
        from contacts.facts import register_facts_listener
        from contacts.selectors import register_tag_filter
        from contacts.services import register_merge_listener
        from tagging import selectors, services

        register_facts_listener(services.customers_mark_for_retag)
        register_merge_listener(services.MergeTags())
        register_tag_filter(selectors.OwnTagFilter())
