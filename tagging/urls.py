from django.urls import path
from django.utils.translation import gettext_lazy as _

from scrm.views import placeholder

urlpatterns = [
    path("tags/", placeholder(title=_("标签"), issue=5), name="tags"),
]
