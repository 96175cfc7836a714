from django.urls import path
from django.utils.translation import gettext_lazy as _

from scrm.views import placeholder
from sop import views

urlpatterns = [
    path("sop/", placeholder(title=_("SOP"), issue=6), name="sop"),
    path("guide/", views.guide_home, name="guide_home"),
    path("guide/sidebar/", views.guide_sidebar, name="guide_sidebar"),
    path("guide/sidebar/bind/", views.sidebar_bind_order, name="guide_sidebar_bind"),
    path("guide/tasks/<int:pk>/<str:action>/", views.task_action, name="guide_task_action"),
    path("guide/oauth/", views.oauth_start, name="guide_oauth"),
    path("guide/oauth/callback/", views.oauth_callback, name="guide_oauth_callback"),
]
