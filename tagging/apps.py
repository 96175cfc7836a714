from django.apps import AppConfig


class TaggingConfig(AppConfig):
    name = "tagging"
    verbose_name = "标签"

    def ready(self) -> None:
        from contacts.facts import register_facts_listener
        from contacts.selectors import register_tag_filter
        from contacts.services import register_merge_listener
        from scrm.exports import register_export_source
        from scrm.models import Export
        from tagging import selectors, services, views

        register_facts_listener(services.customers_mark_for_retag)
        register_merge_listener(services.MergeTags())
        register_tag_filter(selectors.OwnTagFilter())
        register_export_source(Export.Kind.TAG, views.tag_export_table)
