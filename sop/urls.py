from django.urls import path

from sop import console_views, views

urlpatterns = [
    path("sop/", console_views.plan_list, name="sop"),
    path("sop/plans/new/", console_views.plan_edit, name="sop_plan_new"),
    path("sop/plans/preview/", console_views.script_preview, name="sop_script_preview"),
    path("sop/plans/<int:plan_id>/", console_views.plan_detail, name="sop_plan_detail"),
    path("sop/plans/<int:plan_id>/edit/", console_views.plan_edit, name="sop_plan_edit"),
    path("sop/plans/<int:plan_id>/enroll/", console_views.plan_enroll, name="sop_plan_enroll"),
    path("sop/policy/", console_views.policy_edit, name="sop_policy"),
    path("sop/touches/", console_views.touch_list, name="sop_touches"),
    path("sop/touches/export.csv", console_views.touch_export, name="sop_touches_export"),
    path("guide/", views.guide_home, name="guide_home"),
    path("guide/sidebar/", views.guide_sidebar, name="guide_sidebar"),
    path("guide/sidebar/bind/", views.sidebar_bind_order, name="guide_sidebar_bind"),
    path("guide/tasks/<int:pk>/<str:action>/", views.task_action, name="guide_task_action"),
    path("guide/oauth/", views.oauth_start, name="guide_oauth"),
    path("guide/oauth/callback/", views.oauth_callback, name="guide_oauth_callback"),
]
