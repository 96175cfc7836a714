from django.urls import path
from django.utils.translation import gettext_lazy as _

from scrm.views import placeholder

urlpatterns = [
    path("campaigns/", placeholder(title=_("活动"), issue=8), name="campaigns"),
]
