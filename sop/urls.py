from django.urls import path
from django.utils.translation import gettext_lazy as _

from scrm.roles import Perm
from scrm.views import placeholder

urlpatterns = [
    path("sop/", placeholder(title=_("SOP"), issue=6), name="sop"),
    path(
        "guide/",
        placeholder(title=_("今日任务"), issue=6, perm=Perm.USE_GUIDE_APP),
        name="guide_home",
    ),
]
