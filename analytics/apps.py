from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = "数据"

    def ready(self) -> None:
        from analytics import services
        from contacts.facts import register_facts_listener

        # contacts knows no app: after every facts refresh (order imports, merges,
        # callbacks) the dashboards are recomputed, debounced.
        register_facts_listener(services.dashboards_mark_stale)
