from django.urls import path
from django.utils.translation import gettext_lazy as _

from analytics import report_views
from scrm.views import placeholder

urlpatterns = [
    path("dashboards/", placeholder(title=_("数据"), issue=7), name="dashboards"),
    path("reports/", report_views.report_list, name="reports"),
    path("reports/recipients/", report_views.recipient_save, name="report_recipient_save"),
    path("reports/<str:week>/", report_views.report_detail, name="report_detail"),
    path("reports/<str:week>/xlsx/", report_views.report_xlsx, name="report_xlsx"),
]
