"""Pages of 活动 (operators write, managers read): the campaigns and channel codes with
their numbers, the channel code editor (saved in WeCom by channel_code_save), a code's
page with its QR image, adds by day and welcome messages, the campaign editor (segment
with tagging's condition builder, reach before sending, send now or schedule) and a
campaign's page (funnel, guides, attribution)."""

import json
from functools import cache

from django.contrib import messages
from django.contrib.staticfiles import finders
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from campaigns import selectors, sending
from campaigns.forms import (
    ATTACHMENT_FIELD_LABELS,
    ATTACHMENT_NEEDS,
    ATTACHMENT_TYPES,
    CAMPAIGN_STATUS_LABELS,
    DISTRIBUTION_LABELS,
    MESSAGE_STATUS_LABELS,
    RECIPIENT_STATUS_LABELS,
    SOURCE_LABELS,
    WELCOME_STATUS_LABELS,
    WELCOME_VARIABLES,
    CampaignForm,
    ChannelCodeForm,
    held_label,
)
from campaigns.models import Campaign, ChannelCode
from campaigns.sending import CampaignError
from campaigns.services import (
    EDITABLE,
    ChannelCodeError,
    campaign_reach_compute,
    campaign_save,
    campaign_schedule,
    campaign_send_now,
    campaign_unschedule,
    channel_code_save,
    code_stats,
    qr_png,
)
from contacts.models import Customer
from scrm.roles import Perm, permission_required
from scrm.wecom.gateway import WeComError, WeComGateway
from tagging.views import _editor_spec as condition_spec
from tagging.views import _editor_text as condition_text

CAMPAIGN_ACTIONS = ("save", "prepare", "schedule", "send", "unschedule")
RECENT_WELCOMES = 20
ADDS_DAYS = 30


def _require(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied


@cache
def _has_echarts() -> bool:
    """static/vendor/echarts.min.js is installed by `make setup` (npm), not committed."""
    return finders.find("vendor/echarts.min.js") is not None


def _attachment_rows(items: list[dict]) -> list[tuple[str, str]]:
    """(type in the reader's language, what identifies it) for each attachment."""
    return [
        (
            str(ATTACHMENT_TYPES.get(item.get("type"), item.get("type"))),
            item.get("title") or item.get("url") or item.get("pic_url") or item.get("page", ""),
        )
        for item in items or []
    ]


def _decorate_code(code: ChannelCode, stats: dict) -> ChannelCode:
    code.stats = stats
    code.source_label = SOURCE_LABELS.get(code.source, code.source)
    code.distribution_label = DISTRIBUTION_LABELS.get(code.distribution, code.distribution)
    code.attachment_rows = _attachment_rows(code.welcome_attachments)
    return code


def _decorate_campaign(campaign: Campaign) -> Campaign:
    campaign.status_label = CAMPAIGN_STATUS_LABELS.get(campaign.status, campaign.status)
    campaign.is_editable = campaign.status in EDITABLE
    campaign.attachment_rows = _attachment_rows(campaign.attachments)
    return campaign


def _editor_spec() -> dict:
    """The attachment editor's and the variable buttons' words and shapes."""
    return {
        "types": [[code, str(label)] for code, label in ATTACHMENT_TYPES.items()],
        "fields": {
            "image": ["pic_url"],
            "link": ["title", "url", "pic_url"],
            "miniprogram": ["title", "appid", "page", "pic_url"],
        },
        "needs": {kind: list(names) for kind, names in ATTACHMENT_NEEDS.items()},
        "labels": {name: str(label) for name, label in ATTACHMENT_FIELD_LABELS.items()},
        "text": {
            "remove": _("删除"),
            "none": _("没有附件。"),
            "type": _("附件类型"),
        },
    }


# -- the list ----------------------------------------------------------------------------------


@permission_required(Perm.VIEW_CONSOLE)
def campaign_list(request: HttpRequest) -> HttpResponse:
    """Campaigns and channel codes with their numbers: a fixed number of queries however
    many there are (campaign_stats and code_stats aggregate in SQL)."""
    campaigns = [_decorate_campaign(c) for c in selectors.campaigns_listed()]
    campaign_numbers = selectors.campaign_stats(campaigns)
    for campaign in campaigns:
        campaign.stats = campaign_numbers[campaign.pk]
    codes = list(selectors.codes_listed())
    numbers = code_stats(code_ids=[code.pk for code in codes])
    return render(
        request,
        "campaigns/list.html",
        {
            "campaigns": campaigns,
            "codes": [_decorate_code(code, numbers[code.pk]) for code in codes],
            "nav_section": "campaigns",
        },
    )


# -- channel codes ------------------------------------------------------------------------------


@permission_required(Perm.VIEW_CONSOLE)
def code_edit(request: HttpRequest, code_id: int | None = None) -> HttpResponse:
    """A new channel code or an existing one; saved in WeCom (add_contact_way or
    update_contact_way) by channel_code_save. Its refusal is shown and nothing is kept."""
    code = None
    if code_id is not None:
        code = get_object_or_404(ChannelCode.objects.prefetch_related("guides", "tags"), pk=code_id)
    initial = ChannelCodeForm.initial_from(code) if code else {"welcome_attachments": "[]"}
    form = ChannelCodeForm(request.POST or None, initial=initial)
    refused = None
    if request.method == "POST":
        _require(request, Perm.CHANGE_CONSOLE)
        if form.is_valid():
            try:
                saved = channel_code_save(
                    code=code,
                    **form.service_arguments(),
                    gateway=WeComGateway.from_settings(),
                    by=request.user,
                )
            except ChannelCodeError as error:
                refused = str(error)
            except WeComError as error:  # no token, WeCom unreachable: nothing was kept
                refused = _("无法连接企业微信：%(error)s") % {"error": error}
            else:
                messages.success(request, _("活码「%(name)s」已保存。") % {"name": saved.name})
                return redirect("channel_code_detail", code_id=saved.pk)
    return render(
        request,
        "campaigns/code_edit.html",
        {
            "form": form,
            "code": code,
            "refused": refused,
            "variables": [(name, str(meaning)) for name, meaning in WELCOME_VARIABLES.items()],
            "has_manual_tags": form.fields["tags"].queryset.exists(),
            "editor_spec": _editor_spec(),
            "nav_section": "campaigns",
        },
        status=400 if refused or form.errors else 200,
    )


def _adds_chart(adds: list) -> dict:
    """analytics/charts.js's line chart spec for the adds table."""
    return {
        "type": "line",
        "x": [day.strftime("%m-%d") for day, _, _ in adds],
        "series": [
            {
                "name": _("添加"),
                "kind": "count",
                "axis": 0,
                "as": "line",
                "data": [n for _, n, _ in adds],
            },
            {
                "name": _("仍是好友"),
                "kind": "count",
                "axis": 0,
                "as": "line",
                "data": [n for _, _, n in adds],
            },
        ],
    }


@permission_required(Perm.VIEW_CONSOLE)
def code_detail(request: HttpRequest, code_id: int) -> HttpResponse:
    code = get_object_or_404(
        ChannelCode.objects.select_related("store", "sop_plan").prefetch_related(
            "guides", "tags__group"
        ),
        pk=code_id,
    )
    _decorate_code(code, code_stats(code_ids=[code.pk])[code.pk])
    adds = selectors.code_adds_by_day(code, days=ADDS_DAYS)
    welcomes = selectors.recent_welcomes(code, limit=RECENT_WELCOMES)
    for welcome in welcomes:
        welcome.status_label = WELCOME_STATUS_LABELS.get(welcome.status, welcome.status)
    with_chart = _has_echarts()
    return render(
        request,
        "campaigns/code_detail.html",
        {
            "code": code,
            "adds": list(reversed(adds)),  # newest first in the table
            "adds_total": sum(n for _, n, _ in adds),
            "chart": _adds_chart(adds) if with_chart and any(n for _, n, _ in adds) else None,
            "welcomes": welcomes,
            "nav_section": "campaigns",
        },
    )


@permission_required(Perm.VIEW_CONSOLE)
def code_qr(request: HttpRequest, code_id: int) -> HttpResponse:
    """The code's QR image; `?download=1` as an attachment, for printing."""
    code = get_object_or_404(ChannelCode, pk=code_id)
    response = HttpResponse(qr_png(code), content_type="image/png")
    if request.GET.get("download"):
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=f"channel-code-{code.pk}-{code.state}.png"
        )
    return response


# -- campaigns ----------------------------------------------------------------------------------


def _reach_rows(reach: dict) -> dict:
    reach = dict(reach)
    reach["held_rows"] = [(code, held_label(code), n) for code, n in sorted(reach["held"].items())]
    reach["held_total"] = sum(reach["held"].values())
    return reach


def _campaign_condition_text() -> dict:
    return {
        **condition_text(),
        "empty": _("添加至少一个条件，圈出这次群发的客户。"),
    }


@permission_required(Perm.VIEW_CONSOLE)
def campaign_edit(request: HttpRequest, campaign_id: int | None = None) -> HttpResponse:
    """A new campaign or a draft / scheduled one. The buttons: save (draft), compute the
    reach (campaign_prepare), schedule, send now; each saves first, all in one
    transaction: a refusal shows its reason and keeps nothing."""
    campaign = get_object_or_404(Campaign, pk=campaign_id) if campaign_id is not None else None
    if request.method == "POST":
        _require(request, Perm.CHANGE_CONSOLE)
    if campaign is not None and campaign.status not in EDITABLE:
        messages.error(request, _("活动已开始发送，不能再修改。"))
        return redirect("campaign_detail", campaign_id=campaign.pk)
    if campaign is not None:
        initial = CampaignForm.initial_from(campaign)
    else:
        initial = {"condition": json.dumps({"all": []}), "attachments": "[]"}
    form = CampaignForm(request.POST or None, initial=initial)
    refused = None
    if request.method == "POST":
        action = request.POST.get("action", "save")
        if action not in CAMPAIGN_ACTIONS:
            return HttpResponseBadRequest(_("未知的操作。"))
        if action == "unschedule":
            if campaign is None:
                return HttpResponseBadRequest(_("未知的操作。"))
            try:
                campaign_unschedule(campaign=campaign)
            except CampaignError as error:
                messages.error(request, str(error))
            else:
                messages.success(request, _("已取消定时，活动回到草稿。"))
            return redirect("campaign_edit", campaign_id=campaign.pk)
        if form.is_valid():
            try:
                with transaction.atomic():
                    saved = campaign_save(
                        campaign=campaign, fields=form.campaign_fields(), by=request.user
                    )
                    if action == "prepare":
                        campaign_reach_compute(campaign=saved)
                    elif action == "schedule":
                        campaign_schedule(campaign=saved, at=form.cleaned_data["schedule_at"])
                    elif action == "send":
                        campaign_send_now(campaign=saved)
            except CampaignError as error:
                refused = str(error)
                if campaign is not None:
                    campaign.refresh_from_db()
            else:
                return _after_save(request, saved, action)
    reach = None
    if campaign is not None and (
        campaign.prepared_at or campaign.status == Campaign.Status.SCHEDULED
    ):
        reach = _reach_rows(sending.campaign_reach(campaign=campaign))
    return render(
        request,
        "campaigns/campaign_edit.html",
        {
            "form": form,
            "campaign": _decorate_campaign(campaign) if campaign else None,
            "refused": refused,
            "reach": reach,
            "spec": condition_spec(None),
            "condition_text": _campaign_condition_text(),
            "editor_spec": _editor_spec(),
            "nav_section": "campaigns",
        },
        status=400 if refused or form.errors else 200,
    )


def _after_save(request: HttpRequest, campaign: Campaign, action: str) -> HttpResponse:
    name = {"name": campaign.name}
    if action == "prepare":
        messages.success(request, _("已计算「%(name)s」的触达人数。") % name)
        return redirect(reverse("campaign_edit", args=[campaign.pk]) + "#reach")
    if action == "schedule":
        when = timezone.localtime(campaign.schedule_at).strftime("%Y-%m-%d %H:%M")
        messages.success(request, _("「%(name)s」将于 %(when)s 发送。") % {**name, "when": when})
        return redirect("campaign_detail", campaign_id=campaign.pk)
    if action == "send":
        messages.success(
            request, _("「%(name)s」已开始发送：导购会在企业微信里收到群发任务。") % name
        )
        return redirect("campaign_detail", campaign_id=campaign.pk)
    messages.success(request, _("活动「%(name)s」已保存。") % name)
    return redirect("campaign_edit", campaign_id=campaign.pk)


@permission_required(Perm.VIEW_CONSOLE)
def customer_campaigns(request: HttpRequest, customer_id: int) -> HttpResponse:
    """The campaigns one customer was chosen for, with what happened to them."""
    customer = get_object_or_404(Customer, pk=customer_id)
    rows = selectors.customer_campaigns(customer)
    for row in rows:
        row.status_label = RECIPIENT_STATUS_LABELS.get(row.status, row.status)
        row.reason_label = held_label(row.reason) if row.reason else ""
    return render(
        request,
        "campaigns/customer_campaigns.html",
        {
            "customer": customer,
            "rows": rows,
            "shown": selectors.CUSTOMER_CAMPAIGNS_SHOWN,
            "nav_section": "campaigns",
        },
    )


@permission_required(Perm.VIEW_CONSOLE)
def campaign_detail(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = _decorate_campaign(get_object_or_404(Campaign, pk=campaign_id))
    stats = selectors.campaign_stats([campaign])[campaign.pk]
    reach = _reach_rows(sending.campaign_reach(campaign=campaign))
    result = selectors.campaign_attribution(campaign)
    guides = selectors.campaign_guides(campaign)
    funnel = [
        ("targeted", _("目标客户"), stats.reach),
        ("handed", _("交给导购"), stats.handed),
        ("received", _("已收到"), stats.sent),
        ("purchased", _("已购买"), result["buyers"]),
    ]
    top = max((n for _, _, n in funnel), default=0)
    return render(
        request,
        "campaigns/campaign_detail.html",
        {
            "campaign": campaign,
            "stats": stats,
            "reach": reach,
            "result": result,
            "funnel": [
                (key, label, n, round(100 * n / top) if top else 0) for key, label, n in funnel
            ],
            "guides": guides,
            "waiting_guides": sum(1 for g in guides if g.tasks and not g.is_done),
            "message_status_labels": MESSAGE_STATUS_LABELS,
            "nav_section": "campaigns",
        },
    )


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def campaign_refresh(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """Ask WeCom what happened (campaign_results): who confirmed, who received, and
    remind guides who have not sent after an hour."""
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    if campaign.status != Campaign.Status.SENT:
        messages.error(request, _("活动交给导购之后才能刷新结果。"))
        return redirect("campaign_detail", campaign_id=campaign.pk)
    try:
        counts = sending.campaign_results(campaign=campaign, gateway=WeComGateway.from_settings())
    except WeComError as error:
        messages.error(request, _("无法从企业微信读取结果：%(error)s") % {"error": error})
    else:
        messages.success(
            request,
            _(
                "已刷新：%(confirmed)s 个导购任务新确认，%(sent)s 位客户新收到，"
                "提醒了 %(reminded)s 个未发送的任务。"
            )
            % counts,
        )
    return redirect("campaign_detail", campaign_id=campaign.pk)
