from django.urls import path
from django.utils.translation import gettext_lazy as _

from scrm.views import placeholder

urlpatterns = [
    path("customers/", placeholder(title=_("客户"), issue=3), name="customers"),
    path("sync/", placeholder(title=_("同步"), issue=3), name="sync"),
]
