"""The 数据 pages under /analytics/ (the 复购 page is the section's landing page, keeping
the navigation's URL name `dashboards`) and their table exports."""

from django.urls import path, re_path

from analytics import dashboard_views
from analytics.tables import PAGES

urlpatterns = [
    path(
        "analytics/" if page.slug == "repurchase" else f"analytics/{page.slug}/",
        dashboard_views.dashboard,
        {"slug": page.slug},
        name=page.url_name,
    )
    for page in PAGES.values()
] + [
    re_path(
        r"^analytics/export/(?P<slug>[a-z]+)/(?P<table>[a-z_]+)\.(?P<file_format>csv|xlsx)$",
        dashboard_views.export,
        name="analytics_export",
    ),
]
