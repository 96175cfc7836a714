from django.urls import path
from django.utils.translation import gettext_lazy as _

from scrm.views import placeholder
from sop import views

urlpatterns = [
    path("sop/", placeholder(title=_("SOP"), issue=6), name="sop"),
    path("guide/", views.guide_home, name="guide_home"),
]
