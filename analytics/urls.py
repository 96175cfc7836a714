from django.urls import path

from analytics import dashboard_urls, report_views

urlpatterns = [
    *dashboard_urls.urlpatterns,
    path("reports/", report_views.report_list, name="reports"),
    path("reports/recipients/", report_views.recipient_save, name="report_recipient_save"),
    path("reports/<str:week>/", report_views.report_detail, name="report_detail"),
    path("reports/<str:week>/xlsx/", report_views.report_xlsx, name="report_xlsx"),
]
