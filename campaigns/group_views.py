"""Pages of 社群: the customer groups' numbers in a window (operators and managers see
every group, a guide the groups they own), as a table and CSV; and group SOP (群 SOP,
operators write, managers read): the schedules, the editor, and a schedule's sends with
what WeCom says of them."""

import csv
import io
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from campaigns import group_sop
from campaigns.forms import (
    GROUP_SEND_STATUS_LABELS,
    REPEAT_LABELS,
    WEEKDAY_LABELS,
    GroupScheduleForm,
    GroupWindowForm,
)
from campaigns.group_sop import GroupScheduleError, group_schedule_save, group_send_results
from campaigns.groups import group_stats_for
from campaigns.models import GroupSchedule
from campaigns.views import _attachment_rows, _editor_spec, _require
from scrm.roles import Perm, permission_required
from scrm.spreadsheets import csv_row
from scrm.wecom.gateway import WeComError, WeComGateway

SENDS_SHOWN = 100
GROUPS_PER_PAGE = 50


def _stats(request: HttpRequest):
    form = GroupWindowForm(request.GET or None)
    start, end = form.window()
    search, sort = form.listing()
    rows = group_stats_for(request.user, start=start, end=end, search=search, sort=sort)
    return form, start, end, rows


def _console_or_guide(view):
    """Console viewers and guides may open it; group_stats_for scopes what each sees."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        user = request.user
        if not (user.has_perm(Perm.VIEW_CONSOLE) or user.has_perm(Perm.USE_GUIDE_APP)):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapped


@_console_or_guide
def group_list(request: HttpRequest) -> HttpResponse:
    """Per group in the window: owner, size now, joins, quits and the quit rate, members
    who bought and their revenue: one statement whatever the number of groups, found by
    name or owner, sorted by any number, a page of them at a time. The totals are those
    of every group found, not of the page."""
    form, start, end, rows = _stats(request)
    totals = {
        key: sum(row[key] for row in rows)
        for key in ("members", "joins", "quits")  # a buyer in two groups is not summed
    }
    page = Paginator(rows, GROUPS_PER_PAGE).get_page(request.GET.get("page"))
    search, sort = form.listing()
    kept = request.GET.copy()  # the window and the search, for the sort and page links
    kept.pop("page", None)
    export = kept.urlencode()
    kept.pop("sort", None)
    return render(
        request,
        "campaigns/groups.html",
        {
            "form": form,
            "start": start,
            "end": end,
            "search": search,
            "sort": sort,
            "rows": page.object_list,
            "page": page,
            "found": len(rows),
            "totals": totals,
            "query": export,
            "sort_query": kept.urlencode(),
            "nav_section": "campaigns",
        },
    )


def stats_header() -> list[str]:
    return [
        _("群 ID"),
        _("群名"),
        _("群主 UserID"),
        _("群主"),
        _("当前人数"),
        _("其中客户"),
        _("期初人数"),
        _("入群"),
        _("退群"),
        _("退群率"),
        _("购买成员"),
        _("购买成员收入（元）"),
    ]


def stats_row(row: dict) -> list:
    rate = row["quit_rate"]
    return [
        row["chat_id"],
        row["name"],
        row["owner_userid"],
        row["owner_name"],
        row["members"],
        row["customers"],
        row["size_at_start"],
        row["joins"],
        row["quits"],
        "" if rate is None else f"{rate:.4f}",
        row["buyers"],
        f"{row['revenue']:.2f}",
    ]


@_console_or_guide
def group_export(request: HttpRequest) -> HttpResponse:
    """The same table as CSV (UTF-8 with a BOM, so Excel reads it)."""
    _form, start, end, rows = _stats(request)
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    writer.writerow(stats_header())
    for row in rows:
        writer.writerow(csv_row(stats_row(row)))
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="groups-{start}-{end}.csv"'
    return response


# -- group SOP ------------------------------------------------------------------------------


def _decorate(schedule: GroupSchedule, now) -> GroupSchedule:
    schedule.repeat_label = REPEAT_LABELS.get(schedule.repeat, schedule.repeat)
    days = dict(WEEKDAY_LABELS)
    schedule.weekday_labels = _("、").join(str(days[d]) for d in schedule.weekdays if d in days)
    schedule.next_at = schedule.next_slot(now) if schedule.is_active else None
    schedule.attachment_rows = _attachment_rows(schedule.attachments)
    return schedule


@permission_required(Perm.VIEW_CONSOLE)
def schedule_list(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    schedules = [
        _decorate(schedule, now)
        for schedule in GroupSchedule.objects.prefetch_related("groups").order_by("-created_at")
    ]
    return render(
        request,
        "campaigns/group_schedule_list.html",
        {"schedules": schedules, "nav_section": "campaigns"},
    )


@permission_required(Perm.VIEW_CONSOLE)
def schedule_edit(request: HttpRequest, schedule_id: int | None = None) -> HttpResponse:
    """A new group SOP or a change to one (operators only: others get 403 on POST); a
    refusal shows its reason and keeps nothing."""
    schedule = None
    if schedule_id is not None:
        schedule = get_object_or_404(GroupSchedule, pk=schedule_id)
    if request.method == "POST":
        _require(request, Perm.CHANGE_CONSOLE)
    initial = (
        GroupScheduleForm.initial_from(schedule)
        if schedule
        else {"attachments": "[]", "repeat": GroupSchedule.Repeat.DAILY, "is_active": True}
    )
    form = GroupScheduleForm(request.POST or None, initial=initial)
    refused = None
    if request.method == "POST" and form.is_valid():
        try:
            saved = group_schedule_save(
                schedule=schedule, **form.service_arguments(), by=request.user
            )
        except GroupScheduleError as error:
            refused = str(error)
        else:
            messages.success(request, _("群 SOP「%(name)s」已保存。") % {"name": saved.name})
            return redirect("group_schedule_detail", schedule_id=saved.pk)
    return render(
        request,
        "campaigns/group_schedule_edit.html",
        {
            "form": form,
            "schedule": schedule,
            "refused": refused,
            "editor_spec": _editor_spec(),
            "nav_section": "campaigns",
        },
        status=400 if refused or form.errors else 200,
    )


@permission_required(Perm.VIEW_CONSOLE)
def schedule_detail(request: HttpRequest, schedule_id: int) -> HttpResponse:
    """The schedule and its latest sends: per slot and group owner, what was handed to
    WeCom, who confirmed, which groups received it, and who could not be sent (owner left,
    group dismissed, the month's quota reached, WeCom's refusal)."""
    schedule = _decorate(
        get_object_or_404(GroupSchedule.objects.prefetch_related("groups"), pk=schedule_id),
        timezone.now(),
    )
    sends = list(schedule.sends.order_by("-occurrence", "owner_userid")[:SENDS_SHOWN])
    names = {group.chat_id: group.name or group.chat_id for group in schedule.groups.all()}
    for send in sends:
        send.status_label = GROUP_SEND_STATUS_LABELS.get(send.status, send.status)
        send.group_rows = [
            (chat_id, names.get(chat_id, chat_id), send.results.get(chat_id, 0))
            for chat_id in send.chat_ids
        ]
        send.refused_names = [names.get(chat_id, chat_id) for chat_id in send.refused]
        send.over_limit_names = [names.get(chat_id, chat_id) for chat_id in send.over_limit]
        send.groups_sent = sum(1 for status in send.results.values() if status == 1)
    return render(
        request,
        "campaigns/group_schedule_detail.html",
        {"schedule": schedule, "sends": sends, "nav_section": "campaigns"},
    )


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def schedule_refresh(request: HttpRequest, schedule_id: int) -> HttpResponse:
    """Ask WeCom which groups each of the schedule's sends reached."""
    schedule = get_object_or_404(GroupSchedule, pk=schedule_id)
    try:
        counts = group_send_results(
            sends=group_sop.recent_sends().filter(schedule=schedule),
            gateway=WeComGateway.from_settings(),
        )
    except WeComError as error:
        messages.error(request, _("无法从企业微信读取结果：%(error)s") % {"error": error})
    else:
        messages.success(
            request,
            _("已刷新：%(confirmed)s 个群主新确认，%(groups_sent)s 个群新收到。") % counts,
        )
    return redirect("group_schedule_detail", schedule_id=schedule.pk)
