"""The guide's pages: the task list (phone and WeCom chat sidebar), task actions, and
sign-in through WeCom OAuth (the sidebar opens without a password)."""

import secrets
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext_lazy
from django.views.decorators.http import require_POST

from contacts.models import Customer, Guide, Order
from contacts.services import order_bind_by_number
from scrm.auth import BACKEND, has_left
from scrm.limits import LimitReached
from scrm.roles import Perm, permission_required
from scrm.wecom.gateway import WeComError, WeComGateway
from sop import services
from sop.models import Touchpoint
from sop.tasklist import task_list

SIDEBAR_ORDERS = 20  # the newest in the sidebar; the customer page has every one

SKIP_REASONS = [
    gettext_lazy("客户近期已沟通"),
    gettext_lazy("客户不方便"),
    gettext_lazy("不适合这位客户"),
    gettext_lazy("联系不上"),
]


# The words on every task card, translated once per page rather than once per card.
CARD_LABELS = {
    "overdue": gettext_lazy("逾期"),
    "copy": gettext_lazy("复制话术"),
    "done": gettext_lazy("完成"),
    "snooze": gettext_lazy("推迟1小时"),
    "skip": pgettext_lazy("任务操作", "跳过"),  # the action; the stats column says "skipped"
    "other": gettext_lazy("其他原因"),
    "confirm_skip": gettext_lazy("确认跳过"),
    "optout": gettext_lazy("客户不想再收到消息"),
    "confirm_optout": gettext_lazy("记录这位客户拒绝触达？所有计划和群发都不会再触达 ta。"),
}


def _card_words() -> dict:
    return {
        "labels": {key: str(label) for key, label in CARD_LABELS.items()},
        "skip_reasons": [str(reason) for reason in SKIP_REASONS],
    }


def _guide(request: HttpRequest) -> Guide:
    guide = Guide.objects.select_related("store").filter(user=request.user).first()
    if guide is None:
        raise Http404(_("这个账号没有关联导购"))
    return guide


@permission_required(Perm.USE_GUIDE_APP)
def guide_home(request: HttpRequest) -> HttpResponse:
    """Today's tasks a page at a time, overdue flagged, snoozed, and done today."""
    guide = _guide(request)
    page = request.GET.get("page", "1")
    if not page.isdecimal() or not 1 <= int(page) <= 100_000:
        return HttpResponseBadRequest(_("页码应是正整数"))
    tasks = task_list(guide=guide, now=timezone.now(), page=int(page))
    return render(
        request,
        "sop/guide_home.html",
        {"tasks": tasks, "guide": guide, "next": request.get_full_path(), **_card_words()},
    )


@permission_required(Perm.USE_GUIDE_APP)
def guide_sidebar(request: HttpRequest) -> HttpResponse:
    """The WeCom chat sidebar: the customer in the chat (their external_userid, which the
    sidebar's JS-SDK call getCurExternalContact gives), their open tasks, every order,
    and binding an order number to them."""
    guide = _guide(request)
    external_userid = request.GET.get("external_userid", "")
    customer = get_object_or_404(
        Customer.objects.visible_to(request.user), external_userid=external_userid
    )
    tasks = task_list(guide=guide, now=timezone.now(), customer_id=customer.pk)
    orders = Order.objects.filter(customer=customer)
    latest = orders.prefetch_related("lines").order_by(F("paid_at").desc(nulls_last=True), "-id")
    return render(
        request,
        "sop/guide_sidebar.html",
        {
            "customer": customer,
            "tasks": tasks,
            "orders": latest[:SIDEBAR_ORDERS],
            "orders_total": orders.count(),
            "next": request.get_full_path(),
            **_card_words(),
        },
    )


def _back(request: HttpRequest) -> HttpResponse:
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("guide_home")
    return redirect(target)


@require_POST
@permission_required(Perm.USE_GUIDE_APP)
def task_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    guide = _guide(request)
    try:
        if action == "done":
            services.task_done(touchpoint_id=pk, guide=guide)
            messages.success(request, _("已完成"))
        elif action == "skip":
            reason = request.POST.get("reason") or request.POST.get("other", "")
            services.task_skip(touchpoint_id=pk, guide=guide, reason=reason)
            messages.info(request, _("已跳过"))
        elif action == "optout":
            services.task_opt_out(touchpoint_id=pk, guide=guide)
            messages.info(request, _("已记录客户拒绝触达：不会再给这位客户派发任务和群发。"))
        elif action == "snooze":
            hours = {"1": 1, "3": 3}.get(request.POST.get("hours", "1"))
            if hours is None:
                return HttpResponseBadRequest(_("只能推迟 1 或 3 小时"))
            services.task_snooze(
                touchpoint_id=pk, guide=guide, until=timezone.now() + timedelta(hours=hours)
            )
            snoozed = ngettext("已推迟 %(hours)s 小时", "已推迟 %(hours)s 小时", hours)
            messages.info(request, snoozed % {"hours": hours})
        else:
            raise Http404
    except services.TaskError as error:
        if not Touchpoint.objects.of_guide(guide).filter(pk=pk).exists():
            raise Http404(str(error)) from None
        messages.error(request, str(error))
    return _back(request)


@require_POST
@permission_required(Perm.USE_GUIDE_APP)
def sidebar_bind_order(request: HttpRequest) -> HttpResponse:
    guide = _guide(request)
    customer_id = request.POST.get("customer", "")
    if not customer_id.isdecimal():
        return HttpResponseBadRequest(_("请求里没有客户。"))
    customer = get_object_or_404(Customer.objects.visible_to(request.user), pk=int(customer_id))
    try:
        orders = order_bind_by_number(
            guide=guide, customer=customer, channel_order_id=request.POST.get("order_id", "")
        )
        numbers = _("、").join(order.channel_order_id for order in orders)
        messages.success(request, _("订单 %(order)s 已绑定到这位客户") % {"order": numbers})
    except (LookupError, PermissionError, LimitReached) as error:
        messages.error(request, str(error))
    return _back(request)


# -- WeCom OAuth: the sidebar and the app's menu open the platform signed in -------------

OAUTH_STATE = "sop:oauth-state"


def oauth_start(request: HttpRequest) -> HttpResponse:
    """Send the browser to WeCom's authorize page, which comes back with a code."""
    state = secrets.token_urlsafe(16)
    target = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("guide_home")
    request.session[OAUTH_STATE] = {"state": state, "next": target}
    query = urlencode(
        {
            "appid": settings.WECOM_CORP_ID,
            "redirect_uri": request.build_absolute_uri(reverse("guide_oauth_callback")),
            "response_type": "code",
            "scope": "snsapi_base",
            "state": state,
            "agentid": settings.WECOM_AGENT_ID,
        }
    )
    base = settings.WECOM_OAUTH_BASE.rstrip("/")
    return redirect(f"{base}/connect/oauth2/authorize?{query}#wechat_redirect")


def oauth_callback(request: HttpRequest) -> HttpResponse:
    """Exchange the code for the member's userid (auth/getuserinfo) and sign their guide
    account in; a code or state that does not check out signs nobody in."""
    expected = request.session.pop(OAUTH_STATE, None)
    code = request.GET.get("code", "")
    if not expected or request.GET.get("state") != expected["state"] or not code:
        return HttpResponseBadRequest(_("登录链接已失效，请从企业微信重新打开。"))
    try:
        identity = WeComGateway.for_app().call("get", "auth/getuserinfo", params={"code": code})
    except WeComError as error:
        return HttpResponseBadRequest(
            _("企业微信登录失败（%(code)s）：%(message)s")
            % {"code": error.errcode, "message": error.errmsg}
        )
    guide = (
        Guide.objects.filter(
            wecom_userid=identity.get("userid") or identity.get("UserId", ""), user__isnull=False
        )
        .select_related("user")
        .first()
    )
    if guide is None or not guide.user.is_active:
        return HttpResponseBadRequest(_("这个企业微信成员还没有开通导购账号，请联系运营。"))
    if has_left(guide.user):
        return HttpResponseBadRequest(_("这个企业微信成员已不是在职导购，不能登录。"))
    login(request, guide.user, backend=BACKEND)
    return redirect(expected["next"])
