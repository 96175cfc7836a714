from django.urls import path

from tagging import views

urlpatterns = [
    path("tags/", views.tag_list, name="tags"),
    path("tags/retag/", views.retag_now, name="tag_retag"),
    path("tags/manual/", views.manual_tag_create, name="tag_manual_create"),
    path("tags/rules/new/", views.rule_edit, name="tag_rule_new"),
    path("tags/rules/<int:tag_id>/edit/", views.rule_edit, name="tag_rule_edit"),
    path("tags/settings/", views.tag_settings, name="tag_settings"),
    path("tags/customers/<int:customer_id>/", views.customer_tags, name="customer_tags"),
    path("tags/<int:tag_id>/", views.tag_detail, name="tag_detail"),
    path("tags/<int:tag_id>/customers/", views.tag_customers_change, name="tag_customers_change"),
    path("tags/<int:tag_id>/export/", views.tag_export, name="tag_export"),
    path("tags/listed-customers/", views.listed_customers_tag, name="listed_customers_tag"),
    path("tags/bulk/<int:pk>/status", views.bulk_tagging_status, name="bulk_tagging_status"),
    path("tags/bulk/<int:pk>/undo/", views.bulk_tagging_undo, name="bulk_tagging_undo"),
]
