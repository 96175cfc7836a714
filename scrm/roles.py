"""Roles: who may see and change what.

A role is a Django group (operator, guide, manager, admin) created with its
permissions by migration scrm/0002. Pages and the API check permissions;
the role name only decides where a user lands and what the header says.
Ownership (a guide sees only their own customers) is enforced by each app's
querysets on top of this.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import SAFE_METHODS, BasePermission


class Role(models.TextChoices):
    OPERATOR = "operator", _("运营")
    GUIDE = "guide", _("导购")
    MANAGER = "manager", _("店长")
    ADMIN = "admin", _("管理员")


class Perm:
    """The platform permissions (scrm.Access), as `user.has_perm` names them."""

    VIEW_CONSOLE = "scrm.view_console"
    CHANGE_CONSOLE = "scrm.change_console"
    USE_GUIDE_APP = "scrm.use_guide_app"
    CHANGE_REPORT_RECIPIENTS = "scrm.change_report_recipients"
    CONNECT_WECOM = "scrm.connect_wecom"


# The whole product's navigation, in the order operators know it.
NAVIGATION = [
    ("customers", _("客户")),
    ("tags", _("标签")),
    ("sop", _("SOP")),
    ("campaigns", _("活动")),
    ("dashboards", _("数据")),
    ("reports", _("报告")),
    ("sync", _("同步")),
]


def role_of(user) -> Role | None:
    """The user's role; superusers are admins. Several groups: the widest wins."""
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return Role.ADMIN
    names = {group.name for group in user.groups.all()}
    return next(
        (r for r in (Role.ADMIN, Role.OPERATOR, Role.MANAGER, Role.GUIDE) if r.value in names), None
    )


def permission_required(perm: str) -> Callable:
    """Page decorator: log in first, then 403 without the permission."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not request.user.has_perm(perm):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


class ConsolePermission(BasePermission):
    """API: console viewers may read; only those who may change the console write."""

    def has_permission(self, request, view) -> bool:
        perm = Perm.VIEW_CONSOLE if request.method in SAFE_METHODS else Perm.CHANGE_CONSOLE
        return bool(request.user and request.user.has_perm(perm))


def role_context(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"navigation": NAVIGATION}
    return {
        "current_role": role_of(user),
        "is_console_user": user.has_perm(Perm.VIEW_CONSOLE),
        "can_write": user.has_perm(Perm.CHANGE_CONSOLE),
        "can_connect_wecom": user.has_perm(Perm.CONNECT_WECOM),
        "navigation": NAVIGATION,
    }
