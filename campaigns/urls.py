from django.urls import path

from campaigns import group_views, views

urlpatterns = [
    path("campaigns/", views.campaign_list, name="campaigns"),
    path("campaigns/new/", views.campaign_edit, name="campaign_new"),
    path("campaigns/<int:campaign_id>/", views.campaign_detail, name="campaign_detail"),
    path("campaigns/<int:campaign_id>/edit/", views.campaign_edit, name="campaign_edit"),
    path("campaigns/<int:campaign_id>/refresh/", views.campaign_refresh, name="campaign_refresh"),
    path(
        "campaigns/customers/<int:customer_id>/",
        views.customer_campaigns,
        name="customer_campaigns",
    ),
    path("campaigns/codes/new/", views.code_edit, name="channel_code_new"),
    path("campaigns/codes/<int:code_id>/", views.code_detail, name="channel_code_detail"),
    path("campaigns/codes/<int:code_id>/edit/", views.code_edit, name="channel_code_edit"),
    path("campaigns/codes/<int:code_id>/qr.png", views.code_qr, name="channel_code_qr"),
    path("campaigns/groups/", group_views.group_list, name="customer_groups"),
    path("campaigns/groups/export.csv", group_views.group_export, name="customer_groups_export"),
    path("campaigns/group-sop/", group_views.schedule_list, name="group_schedules"),
    path("campaigns/group-sop/new/", group_views.schedule_edit, name="group_schedule_new"),
    path(
        "campaigns/group-sop/<int:schedule_id>/",
        group_views.schedule_detail,
        name="group_schedule_detail",
    ),
    path(
        "campaigns/group-sop/<int:schedule_id>/edit/",
        group_views.schedule_edit,
        name="group_schedule_edit",
    ),
    path(
        "campaigns/group-sop/<int:schedule_id>/refresh/",
        group_views.schedule_refresh,
        name="group_schedule_refresh",
    ),
]
