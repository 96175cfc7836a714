"""Console pages of SOP (operators write, managers read): the plans with what they
achieved, the plan editor with its script preview, a plan's page with manual enrolment,
the contact policy, and the log of suppressed and stopped touches with its CSV export.
The guide's task list is sop.views.guide_home."""

import csv
import json
from datetime import datetime, time
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from contacts.models import Customer, Guide
from scrm.roles import Perm, permission_required
from scrm.spreadsheets import csv_row
from sop import selectors, services
from sop.forms import (
    ACTION_LABELS,
    ATTACHMENT_TYPES,
    ENROLLMENT_LABELS,
    MAX_STEPS,
    REASON_LABELS,
    STATUS_LABELS,
    STOP_REASONS,
    SUPPRESSION_REASONS,
    TRIGGER_LABELS,
    VARIABLE_LABELS,
    EnrollForm,
    PlanForm,
    PolicyForm,
    reason_label,
    steps_json,
)
from sop.models import ContactPolicy, SopPlan, Touchpoint
from sop.services import VARIABLES, PlanError
from tagging.models import CustomerTag, Tag
from tagging.rules import RuleError
from tagging.services import rule_preview
from tagging.views import _editor_spec as condition_spec
from tagging.views import _editor_text as condition_text

PAGE_SIZE = 50
COUNT_CAP = 10_000  # counting stops here: "10,000+" stays instant on millions of touches
SEARCH_CANDIDATES = 10
NEW_STEP = {
    "offset_days": 0,
    "offset_hours": 0,
    "window_start": time(10),
    "window_end": time(21),
    "action": "message",
    "script": "",
    "attachments": [],
    "is_automatic": False,
}


def _require(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied


def _render(request: HttpRequest, template: str, context: dict, status: int = 200):
    # nav_section: the base template marks SOP in the main navigation on every SOP page.
    return render(request, template, {**context, "nav_section": "sop"}, status=status)


def _reasons(counts: dict[str, int]) -> list[tuple[str, str, int]]:
    return [(code, reason_label(code), n) for code, n in sorted(counts.items()) if n]


def _trigger_summary(plan: SopPlan, tag_names: dict[int, str]) -> str:
    label = str(TRIGGER_LABELS.get(plan.trigger, plan.trigger))
    params = plan.trigger_params or {}
    if plan.trigger == SopPlan.Trigger.CONTACT_ADDED and params.get("state"):
        return f"{label}（state={params['state']}）"
    if plan.trigger == SopPlan.Trigger.TAG_ADDED and params.get("tag"):
        tag = str(params["tag"])
        name = tag_names.get(int(tag)) if tag.isdecimal() else None
        return f"{label}（{name or '#' + tag}）"
    if plan.trigger == SopPlan.Trigger.DAYS_SINCE_PURCHASE and params.get("days"):
        return label.replace("N", str(params["days"]))
    return label


def _tag_names(plans: list[SopPlan]) -> dict[int, str]:
    ids = {
        int(plan.trigger_params["tag"])
        for plan in plans
        if plan.trigger == SopPlan.Trigger.TAG_ADDED
        and str((plan.trigger_params or {}).get("tag", "")).isdecimal()
    }
    if not ids:
        return {}
    return {tag.pk: tag.label for tag in Tag.objects.filter(pk__in=ids).select_related("group")}


def _decorate(stats: selectors.TouchStats) -> selectors.TouchStats:
    stats.suppressed_reasons = _reasons(stats.suppressed)
    stats.stopped_reasons = _reasons(stats.stopped)
    return stats


# -- the plans -------------------------------------------------------------------------------


@permission_required(Perm.VIEW_CONSOLE)
def plan_list(request: HttpRequest) -> HttpResponse:
    plans = list(selectors.plans_listed())
    stats = selectors.plan_stats([plan.pk for plan in plans])
    tag_names = _tag_names(plans)
    for plan in plans:
        plan.stats = _decorate(stats[plan.pk])
        plan.trigger_label = _trigger_summary(plan, tag_names)
    return _render(request, "sop/plan_list.html", {"plans": plans})


def _editor_spec() -> tuple[dict, dict]:
    """tagging's condition builder (its spec and words) for the audience, and the step
    editor's own."""
    audience_text = {
        **condition_text(),
        "empty": _("没有人群条件：所有有跟进导购的客户都可以加入。"),
    }
    steps = {
        "actions": [[code, str(label)] for code, label in ACTION_LABELS.items()],
        "variables": [
            [name, str(VARIABLE_LABELS.get(name, meaning))] for name, meaning in VARIABLES.items()
        ],
        "attachment_types": [[code, str(label)] for code, label in ATTACHMENT_TYPES.items()],
        "max_steps": MAX_STEPS,
        "preview_url": reverse("sop_script_preview"),
        "new_step": json.loads(steps_json([NEW_STEP]))[0],
        "text": {
            "step": _("第 {n} 步"),
            "day": _("第几天"),
            "hours": _("之后几小时"),
            "dayHint": _("触发当天为第 0 天"),
            "window": _("发送窗口"),
            "to": _("至"),
            "action": _("动作"),
            "script": _("话术"),
            "variables": _("插入变量："),
            "attachments": _("附件"),
            "addAttachment": _("+ 附件"),
            "automatic": _("自动发送（通过企业微信群发助手，导购确认后送达）"),
            "up": _("上移"),
            "down": _("下移"),
            "remove": _("删除"),
            "addStep": _("+ 添加步骤"),
            "noSteps": _("还没有步骤。"),
            "title": _("标题"),
            "url": _("链接地址"),
            "picUrl": _("图片地址"),
            "appid": _("小程序 AppID"),
            "page": _("小程序页面"),
            "rendered": _("预览："),
            "previewing": _("正在生成预览…"),
            "sample": _("示例客户：{customer}（导购：{guide}）"),
            "failed": _("预览失败，请稍后再试。"),
            "pick": _("选择另一位客户"),
            "empty": _("（空）"),
        },
    }
    return condition_spec(None), {"condition": audience_text, "steps": steps}


@permission_required(Perm.VIEW_CONSOLE)
def plan_edit(request: HttpRequest, plan_id: int | None = None) -> HttpResponse:
    """A new plan (no plan_id) or an existing one; managers see it, operators save."""
    plan = get_object_or_404(SopPlan, pk=plan_id) if plan_id is not None else None
    if plan is not None:
        initial = PlanForm.initial_from(plan, selectors.plan_steps(plan))
    else:
        initial = {
            "trigger": SopPlan.Trigger.MANUAL,
            "condition": json.dumps({"all": []}),
            "steps": steps_json([NEW_STEP]),
        }
    form = PlanForm(request.POST or None, initial=initial)
    refused = None
    if request.method == "POST":
        _require(request, Perm.CHANGE_CONSOLE)
        if form.is_valid():
            try:
                saved = services.plan_save(
                    plan=plan,
                    fields=form.plan_fields(),
                    steps=form.cleaned_data["steps"],
                    by=request.user,
                )
            except PlanError as error:
                refused = str(error)
            else:
                messages.success(request, _("计划「%(name)s」已保存。") % {"name": saved.name})
                return redirect("sop_plan_detail", plan_id=saved.pk)
    spec, text = _editor_spec()
    return _render(
        request,
        "sop/plan_edit.html",
        {
            "form": form,
            "plan": plan,
            "refused": refused,
            "spec": spec,
            "condition_text": text["condition"],
            "steps_spec": text["steps"],
        },
        status=400 if refused or form.errors else 200,
    )


def _sample_customer(body: dict) -> tuple[Customer | None, list[Customer], str | None]:
    """The customer a preview renders for: the one picked, the first found by a search,
    or the first of the audience who has a guide. Returns (customer, candidates, error)."""
    picked = body.get("customer")
    if picked not in (None, ""):
        customer = Customer.objects.filter(pk=picked if str(picked).isdecimal() else 0).first()
        return customer, [], None if customer else _("找不到这位客户。")
    if text := str(body.get("q") or "").strip():
        candidates = list(
            Customer.objects.search(text)
            .filter(merged_into__isnull=True)
            .order_by("pk")[:SEARCH_CANDIDATES]
        )
        if not candidates:
            return None, [], _("没有找到匹配“%(q)s”的客户。") % {"q": text}
        return candidates[0], candidates, None
    condition = body.get("condition")
    if condition in (None, {}, {"all": []}):
        customer = selectors.first_followed()
    else:
        try:
            preview = rule_preview(condition=condition)
        except RuleError as error:
            return None, [], _("人群条件：%(reason)s") % {"reason": error}
        customer = selectors.first_followed([row["id"] for row in preview.sample])
    if customer is None:
        return None, [], _("人群中没有找到有跟进导购的客户，请搜索一位客户。")
    return customer, [], None


@permission_required(Perm.VIEW_CONSOLE)
@require_POST
def script_preview(request: HttpRequest) -> JsonResponse:
    """The steps' scripts rendered for a sample customer and their guide (JSON, nothing
    saved): `{"condition", "scripts": [...], "customer"?: id, "q"?: search}`."""
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"error": _("请求格式不对。")}, status=400)
    if not isinstance(body, dict):
        return JsonResponse({"error": _("请求格式不对。")}, status=400)
    scripts = body.get("scripts") or []
    if not isinstance(scripts, list) or len(scripts) > MAX_STEPS:
        return JsonResponse({"error": _("请求格式不对。")}, status=400)
    customer, candidates, error = _sample_customer(body)
    listed = [{"id": c.pk, "name": c.name or f"#{c.pk}"} for c in candidates]
    if error:
        return JsonResponse({"error": error, "candidates": listed}, status=400)
    guide = selectors.acting_guide(customer)
    if guide is None:
        return JsonResponse(
            {
                "error": _("客户「%(name)s」没有跟进导购，无法填入导购和门店。")
                % {"name": customer.name or customer.pk},
                "candidates": listed,
            },
            status=400,
        )
    return JsonResponse(
        {
            "customer": {"id": customer.pk, "name": customer.name or f"#{customer.pk}"},
            "guide": {"id": guide.pk, "name": guide.name},
            "scripts": [
                services.script_render(script=str(script or ""), customer=customer, guide=guide)
                for script in scripts
            ],
            "candidates": listed,
        }
    )


@permission_required(Perm.VIEW_CONSOLE)
def plan_detail(
    request: HttpRequest, plan_id: int, enroll_form: EnrollForm | None = None
) -> HttpResponse:
    plan = get_object_or_404(
        SopPlan.objects.select_related("stop_on_tag_added", "stop_on_tag_removed"), pk=plan_id
    )
    steps = list(selectors.plan_steps(plan, retired=True))
    by_step = selectors.step_stats(plan)
    for step in steps:
        step.stats = _decorate(by_step.get(step.pk, selectors.TouchStats()))
        step.action_label = ACTION_LABELS.get(step.action, step.action)
    enrollments = list(selectors.recent_enrollments(plan))
    for enrollment in enrollments:
        enrollment.status_label = ENROLLMENT_LABELS.get(enrollment.status, enrollment.status)
        enrollment.reason_label = reason_label(enrollment.stopped_reason)
    return _render(
        request,
        "sop/plan_detail.html",
        {
            "plan": plan,
            "trigger_label": _trigger_summary(plan, _tag_names([plan])),
            "audience_json": json.dumps(plan.audience, ensure_ascii=False) if plan.audience else "",
            "totals": _decorate(selectors.plan_stats([plan.pk])[plan.pk]),
            "steps": steps,
            "enrollments": enrollments,
            "enroll_form": enroll_form or EnrollForm(),
        },
        status=400 if enroll_form is not None else 200,
    )


@permission_required(Perm.CHANGE_CONSOLE)
@require_POST
def plan_enroll(request: HttpRequest, plan_id: int) -> HttpResponse:
    """Enrol pasted customer ids, or every customer with a tag, in the plan (once per
    customer per day; customers outside the audience or without a guide are left out)."""
    plan = get_object_or_404(SopPlan, pk=plan_id)
    form = EnrollForm(request.POST)
    if not form.is_valid():
        return plan_detail(request, plan_id=plan.pk, enroll_form=form)
    if form.cleaned_data["tag"] is not None:
        ids = list(
            CustomerTag.objects.filter(tag=form.cleaned_data["tag"]).values_list(
                "customer_id", flat=True
            )
        )
    else:
        ids = form.cleaned_data["customer_ids"]
    enrolled = services.enroll_manual(plan=plan, customer_ids=ids, by=request.user)
    messages.success(
        request,
        _(
            "已加入 %(enrolled)s 位客户（共选择 %(chosen)s 位；不在人群内、没有跟进导购"
            "或今天已加入的客户不会重复加入）。"
        )
        % {"enrolled": enrolled, "chosen": len(ids)},
    )
    return redirect("sop_plan_detail", plan_id=plan.pk)


# -- the contact policy ------------------------------------------------------------------------


@permission_required(Perm.VIEW_CONSOLE)
def policy_edit(request: HttpRequest) -> HttpResponse:
    # An unsaved row of defaults until someone saves: opening the page writes nothing.
    policy = ContactPolicy.objects.order_by("pk").first() or ContactPolicy()
    form = PolicyForm(request.POST or None, instance=policy)
    if request.method == "POST":
        _require(request, Perm.CHANGE_CONSOLE)
        if form.is_valid():
            form.save()
            messages.success(request, _("触达规则已保存，下一次派发起生效。"))
            return redirect("sop_policy")
    return _render(
        request,
        "sop/policy.html",
        {"form": form, "policy": policy},
        status=400 if form.errors else 200,
    )


# -- the log of suppressed and stopped touches --------------------------------------------------


def _int_param(params, name: str) -> int | None:
    value = params.get(name, "")
    if not value:
        return None
    if not (value.isascii() and value.isdecimal()):
        raise Http404(f"bad {name}")
    return int(value)


def _touch_filter(params) -> selectors.TouchFilter:
    status = params.get("status", "")
    if status == "all":
        statuses: tuple[str, ...] = ()
    elif status:
        if status not in Touchpoint.Status.values:
            raise Http404("bad status")
        statuses = (status,)
    else:
        statuses = selectors.TouchFilter.statuses
    return selectors.TouchFilter(
        statuses=statuses,
        reason=params.get("reason", "").strip(),
        plan_id=_int_param(params, "plan"),
        guide_id=_int_param(params, "guide"),
        customer_id=_int_param(params, "customer"),
    )


def _touch_query(params, keys=("status", "reason", "plan", "guide", "customer")) -> str:
    return urlencode({k: params.get(k) for k in keys if params.get(k)})


@permission_required(Perm.VIEW_CONSOLE)
def touch_list(request: HttpRequest) -> HttpResponse:
    filters = _touch_filter(request.GET)
    queryset = selectors.touchpoints_filtered(filters)
    counted = queryset.order_by().values("pk")[: COUNT_CAP + 1].count()
    if (after := _int_param(request.GET, "after")) is not None:
        queryset = queryset.filter(pk__lt=after)
    rows = list(queryset.select_related("plan", "step", "customer", "guide")[: PAGE_SIZE + 1])
    next_cursor = rows[PAGE_SIZE - 1].pk if len(rows) > PAGE_SIZE else None
    rows = rows[:PAGE_SIZE]
    for row in rows:
        row.status_label = STATUS_LABELS.get(row.status, row.status)
        row.reason_label = reason_label(row.reason) if row.reason else ""
    reasons = [(code, REASON_LABELS[code]) for code in SUPPRESSION_REASONS + STOP_REASONS]
    return _render(
        request,
        "sop/touch_list.html",
        {
            "touches": rows,
            "total": min(counted, COUNT_CAP),
            "total_capped": counted > COUNT_CAP,
            "next_cursor": next_cursor,
            "query": _touch_query(request.GET),
            "query_any_customer": _touch_query(request.GET, ("status", "reason", "plan", "guide")),
            "filters": request.GET,
            "statuses": list(STATUS_LABELS.items()),
            "reasons": reasons,
            "plans": SopPlan.objects.only("id", "name").order_by("-priority", "pk"),
            "guides": Guide.objects.active().only("id", "name", "wecom_userid"),
            "customer": (
                Customer.objects.filter(pk=filters.customer_id).first()
                if filters.customer_id is not None
                else None
            ),
        },
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


def _local(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if value else ""


def touch_export_header() -> list[str]:
    return [
        _("触达ID"),
        _("计划"),
        _("第几步"),
        _("客户ID"),
        _("客户"),
        _("导购"),
        _("状态"),
        _("原因"),
        _("原因代码"),
        _("计划触达时间"),
        _("窗口结束"),
    ]


@permission_required(Perm.VIEW_CONSOLE)
def touch_export(request: HttpRequest) -> StreamingHttpResponse:
    """The filtered log, every row, streamed as CSV (memory stays flat at any size)."""
    rows = selectors.touchpoint_rows(_touch_filter(request.GET))
    writer = csv.writer(_Echo())

    def lines():
        yield "\ufeff"  # so Excel opens it as UTF-8
        yield writer.writerow(touch_export_header())
        for pk, plan, position, customer_id, customer, guide, status, reason, due, end in rows:
            yield writer.writerow(
                csv_row(
                    [
                        pk,
                        plan,
                        position,
                        customer_id,
                        customer,
                        guide,
                        str(STATUS_LABELS.get(status, status)),
                        reason_label(reason) if reason else "",
                        reason,
                        _local(due),
                        _local(end),
                    ]
                )
            )

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="sop-touches.csv"'
    return response
