from django.urls import path

from analytics import api
from analytics.dashboards import METRICS

urlpatterns = [
    path(
        f"analytics/{name}/",
        api.MetricView.as_view(metric=name),
        name=f"analytics-{name}",
    )
    for name in METRICS
]
