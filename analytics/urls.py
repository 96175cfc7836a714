from django.urls import path
from django.utils.translation import gettext_lazy as _

from scrm.views import placeholder

urlpatterns = [
    path("dashboards/", placeholder(title=_("数据"), issue=7), name="dashboards"),
    path("reports/", placeholder(title=_("报告"), issue=7), name="reports"),
]
