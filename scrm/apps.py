from django.apps import AppConfig


class ScrmConfig(AppConfig):
    name = "scrm"
    verbose_name = "平台"
