"""Sign-in and permissions: Django's, except for a guide who has left.

A guide's account is theirs while WeCom says they work here: the sync marks the
guide inactive (`Guide.is_active`) when their WeCom account is disabled, gone or
loses customer contact, and WeCom's callback of a member deleted or disabled does
at once (`contacts.services.guide_left`). From then on the account signs nobody in, its sessions end
and its API tokens carry no permission, though the user row stays as it was (the
access comes back by itself if WeCom lists them again).
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import Throttled

from scrm.limits import HourlyLimit

BACKEND = "scrm.auth.Backend"

# Passwords are not guessed in bulk: a username that failed to sign in this many times
# in an hour signs in no more until that hour is over, on every way in (the login
# page, the admin's, the API token): all go through `Backend.authenticate`.
LOGIN_FAILURES = HourlyLimit("login-failure", per_hour=10)


def _login_name(username) -> str:
    return str(username or "").strip().casefold()


def login_refusal(username) -> str | None:
    """Why `username` may not try to sign in now, or None."""
    name = _login_name(username)
    if not LOGIN_FAILURES.reached(name):
        return None
    return _(
        "这个用户名一小时内登录失败已有 %(most)s 次，%(minutes)s 分钟后可以再试；"
        "忘了密码请找管理员。"
    ) % {"most": LOGIN_FAILURES.per_hour, "minutes": LOGIN_FAILURES.minutes_left(name)}


def has_left(user) -> bool:
    guide = getattr(user, "guide", None)  # the reverse one-to-one; None when not a guide
    return guide is not None and not guide.is_active


class Backend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        name = _login_name(username)
        if LOGIN_FAILURES.reached(name):
            raise PermissionDenied  # authenticate() stops: the password is not even tried
        user = super().authenticate(request, username, password, **kwargs)
        if user is None:
            LOGIN_FAILURES.count(name)
        return user

    def get_user(self, user_id):
        """The session's user with their guide, if any, in one query (`has_left` reads it)."""
        user = get_user_model()._default_manager.select_related("guide").filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None

    def user_can_authenticate(self, user) -> bool:
        return super().user_can_authenticate(user) and not has_left(user)

    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        if has_left(user_obj):
            return set()
        return super().get_all_permissions(user_obj, obj)


class LoginForm(AuthenticationForm):
    """The login page's form: a username refused for its failures is told so."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": gettext_lazy("用户名或密码不正确，请重试。"),
    }

    def clean(self):
        refusal = login_refusal(self.data.get("username"))
        if refusal:
            raise ValidationError(refusal, code="too_many_failures")
        return super().clean()


class TokenView(ObtainAuthToken):
    """`POST /api/v1/auth/token/`: a username refused for its failures gets 429."""

    def post(self, request, *args, **kwargs):
        username = request.data.get("username")
        refusal = login_refusal(username)
        if refusal:
            wait = LOGIN_FAILURES.minutes_left(_login_name(username)) * 60
            raise Throttled(wait=wait, detail=refusal)
        return super().post(request, *args, **kwargs)
