"""Pages: the tag list, the rule editor, a tag's customers (with exports and manual
tagging), the system tag settings, and the customer-tags fragment of the 360° page."""

import json
import re
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from contacts.listing import filters_refused
from contacts.models import Customer, Guide, Product, Store
from contacts.order_files import ORDER_CHANNEL_NAMES, ORDER_CHANNELS
from scrm.exports import Table, export_asked
from scrm.models import Export
from scrm.roles import Perm, permission_required
from scrm.spreadsheets import wall_clock
from tagging import bulk, selectors, services
from tagging.forms import ManualTagForm, RuleForm, SystemTagSettingsForm
from tagging.models import BulkTagging, SystemTagSettings, Tag, TagGroup
from tagging.rules import FACTS, RuleError
from tagging.system import DEFAULTS, current_settings

PAGE_SIZE = 50
BULK_TAGGINGS_SHOWN = 10  # the newest, on the tag's page
COUNT_CAP = 10_000  # counting stops here: "10,000+" stays instant on a tag of millions
SUGGESTIONS = 200  # attribute values offered per kind in the rule editor

# The editor's labels in the reader's language (tagging.rules keeps the Chinese ones).
FACT_LABELS = {
    "purchase_days": gettext_lazy("购买天数"),
    "net_revenue": gettext_lazy("净销售额（元）"),
    "avg_order_value": gettext_lazy("客单价（元）"),
    "days_since_last_purchase": gettext_lazy("距最近购买天数"),
    "first_purchase_on": gettext_lazy("首次购买日期"),
    "median_interval_days": gettext_lazy("购买间隔中位数（天）"),
    "category_share": gettext_lazy("品类占比"),
    "material_share": gettext_lazy("材质占比"),
    "style_share": gettext_lazy("款式占比"),
    "channel": gettext_lazy("购买渠道"),
    "is_member": gettext_lazy("私域会员"),
    "guide": gettext_lazy("跟进导购"),
    "store": gettext_lazy("门店"),
    "joined_on": gettext_lazy("入会日期"),
    "tag": gettext_lazy("标签"),
}
SOURCE_LABELS = {
    Tag.Source.MANUAL: gettext_lazy("手动"),
    Tag.Source.RULE: gettext_lazy("规则"),
    Tag.Source.SYSTEM: gettext_lazy("系统"),
    Tag.Source.WECOM: gettext_lazy("企业微信"),
}
CAUSE_LABELS = {
    "rule": gettext_lazy("规则"),
    "system": gettext_lazy("系统分层"),
    "manual": gettext_lazy("手动"),
    "sync": gettext_lazy("企业微信同步"),
    "merge": gettext_lazy("客户合并"),
}
ACTION_LABELS = {"added": gettext_lazy("添加"), "removed": gettext_lazy("移除")}


def _require(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied


# -- the tag list --------------------------------------------------------------------------


@permission_required(Perm.VIEW_CONSOLE)
def tag_list(request: HttpRequest, manual_form: ManualTagForm | None = None) -> HttpResponse:
    groups = list(selectors.tag_groups_with_tags())
    for group in groups:
        for tag in group.tags.all():
            tag.source_label = SOURCE_LABELS.get(tag.source, tag.source)
    return render(
        request,
        "tagging/tag_list.html",
        {
            "groups": groups,
            "rules": selectors.rules_listed(),
            "manual_form": manual_form or ManualTagForm(),
        },
    )


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def retag_now(request: HttpRequest) -> HttpResponse:
    # Debounced by the service: pressing twice (or right after a rule was saved) is one run.
    transaction.on_commit(services.schedule_full_retag)
    messages.success(request, _("已开始全量重算标签，几分钟内完成。"))
    return redirect("tags")


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def manual_tag_create(request: HttpRequest) -> HttpResponse:
    form = ManualTagForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            with transaction.atomic():
                group = data["group"] or TagGroup.objects.get_or_create(name=data["new_group"])[0]
                Tag.objects.create(
                    group=group,
                    name=data["name"],
                    color=data["color"],
                    description=data["description"],
                    source=Tag.Source.MANUAL,
                )
        except IntegrityError:
            form.add_error("name", _("这个标签组里已有同名标签。"))
        else:
            messages.success(request, _("已创建手动标签「%(name)s」。") % {"name": data["name"]})
            return redirect("tags")
    return tag_list(request, manual_form=form)


# -- the rule editor -----------------------------------------------------------------------


def _editor_spec(exclude_tag: Tag | None) -> dict:
    """What the visual builder offers: facts with their kind, and the values to choose."""
    tags = Tag.objects.select_related("group").order_by("group__order", "group_id", "order", "id")
    if exclude_tag is not None:
        tags = tags.exclude(pk=exclude_tag.pk)
    suggestions = {}
    for kind in ("category", "material", "style"):
        values = (
            Product.objects.exclude(**{kind: ""})
            .order_by(kind)
            .values_list(kind, flat=True)
            .distinct()[:SUGGESTIONS]
        )
        suggestions[f"{kind}_share"] = list(values)
    return {
        "facts": [
            {
                "name": name,
                "label": str(FACT_LABELS.get(name, fact.label)),
                "kind": fact.kind,
                "windowed": fact.windowed,
            }
            for name, fact in FACTS.items()
        ],
        "options": {
            "channel": [[code, ORDER_CHANNEL_NAMES[code]] for code in ORDER_CHANNELS],
            "store": [[s.code, s.name] for s in Store.objects.only("code", "name")],
            "guide": [
                [g.wecom_userid, g.name]
                for g in Guide.objects.active().only("wecom_userid", "name")
            ],
            "tag": [[t.pk, f"{t.group.label} / {t.label}"] for t in tags],
        },
        "suggestions": suggestions,
        "preview_url": reverse("tagrule-preview"),
        "customer_url": reverse("customer_detail", args=[0]).replace("/0/", "/{id}/"),
    }


def _editor_text() -> dict:
    """The builder's words, translated here so the script needs no catalogue."""
    return {
        "all": _("全部满足"),
        "any": _("任一满足"),
        "not": _("取反（都不满足）"),
        "addCondition": _("+ 条件"),
        "addGroup": _("+ 条件组"),
        "remove": _("删除"),
        "lastDays": _("最近天数"),
        "allTime": _("留空为全部时间"),
        "key": _("值，例如 冰丝"),
        "byLines": _("按件数"),
        "byRevenue": _("按金额"),
        "yes": _("是"),
        "no": _("否"),
        "has": _("有"),
        "lacks": _("没有"),
        "anyOf": _("任一"),
        "allOf": _("全部"),
        "noneOf": _("都不"),
        "commaList": _("逗号分隔"),
        "and": _("至"),
        "matches": _("匹配 {n} 位客户"),
        "sampleNote": _("前 {n} 位："),
        "counting": _("正在计算…"),
        "empty": _("添加至少一个条件后显示匹配的客户。"),
        "fact": _("条件项"),
        "badJson": _("JSON 格式错误："),
        "notVisual": _("这个条件无法在可视化编辑器中显示，请直接编辑下方的 JSON。"),
        "failed": _("预览失败，请稍后再试。"),
        "name": _("客户"),
        "purchaseDays": _("购买天数"),
        "netRevenue": _("净销售额"),
        "lastPurchase": _("最近购买"),
    }


@permission_required(Perm.VIEW_CONSOLE)
def rule_edit(request: HttpRequest, tag_id: int | None = None) -> HttpResponse:
    """New rule (no tag_id) or a rule tag's rule. Managers see it; operators save."""
    tag = None
    if tag_id is not None:
        tag = get_object_or_404(
            Tag.objects.select_related("group", "rule"), pk=tag_id, source=Tag.Source.RULE
        )
        initial = {
            "name": tag.name,
            "group": tag.group,
            "color": tag.color,
            "is_active": tag.rule.is_active,
            "condition": json.dumps(tag.rule.condition, ensure_ascii=False, indent=2),
        }
    else:
        initial = {"condition": json.dumps({"all": []})}
    form = RuleForm(request.POST or None, initial=initial)
    if request.method == "POST":
        _require(request, Perm.CHANGE_CONSOLE)
        if form.is_valid():
            data = form.cleaned_data
            try:
                # One transaction: a refused rule leaves no new group behind either.
                with transaction.atomic():
                    group = (
                        data["group"] or TagGroup.objects.get_or_create(name=data["new_group"])[0]
                    )
                    services.rule_save(
                        tag=tag,
                        group=group,
                        name=data["name"],
                        color=data["color"],
                        condition=data["condition"],
                        is_active=data["is_active"],
                        by=request.user,
                    )
            except RuleError as error:
                form.add_error("condition", str(error))
            except IntegrityError:
                form.add_error("name", _("这个标签组里已有同名标签。"))
            else:
                messages.success(
                    request, _("规则「%(name)s」已保存，正在重新计算。") % {"name": data["name"]}
                )
                return redirect("tags")
    return render(
        request,
        "tagging/rule_edit.html",
        {
            "form": form,
            "tag": tag,
            "spec": _editor_spec(tag),
            "text": _editor_text(),
        },
    )


# -- a tag's customers ---------------------------------------------------------------------


def _filter_query(params) -> str:
    return urlencode({k: params.get(k) for k in ("q", "guide", "member", "show") if params.get(k)})


@permission_required(Perm.VIEW_CONSOLE)
def tag_detail(request: HttpRequest, tag_id: int) -> HttpResponse:
    tag = get_object_or_404(Tag.objects.select_related("group"), pk=tag_id)
    filters = selectors.tag_page_filter(request.GET, tag)
    queryset = selectors.tag_customers(tag=tag, filters=filters)
    counted = queryset.order_by().values("pk")[: COUNT_CAP + 1].count()
    if after := request.GET.get("after", ""):
        if not after.isdecimal():
            raise Http404("bad page cursor")
        queryset = queryset.filter(pk__lt=int(after))
    rows = list(queryset[: PAGE_SIZE + 1])
    next_cursor = rows[PAGE_SIZE - 1].pk if len(rows) > PAGE_SIZE else None
    query = _filter_query(request.GET)
    return render(
        request,
        "tagging/tag_detail.html",
        {
            "tag": tag,
            "rule": getattr(tag, "rule", None) if tag.source == Tag.Source.RULE else None,
            "source_label": SOURCE_LABELS.get(tag.source, tag.source),
            "customers": rows[:PAGE_SIZE],
            "total": min(counted, COUNT_CAP),
            "total_capped": counted > COUNT_CAP,
            "next_cursor": next_cursor,
            "filters": request.GET,
            "everyone": filters.everyone,
            "is_manual": tag.source == Tag.Source.MANUAL,
            "query": query,
            "guides": Guide.objects.active().only("id", "name", "wecom_userid"),
            "bulk_taggings": tag.bulk_taggings.select_related(
                "requested_by", "undoes", "undone_by"
            )[:BULK_TAGGINGS_SHOWN],
        },
    )


@require_POST
@permission_required(Perm.VIEW_CONSOLE)
def tag_export(request: HttpRequest, tag_id: int) -> HttpResponse:
    """Queue an export of the tag's customers as the page shows them (its query string
    comes along), to be downloaded from the exports page when a worker has written it."""
    tag = get_object_or_404(Tag.objects.select_related("group"), pk=tag_id)
    title = f"{tag.group.label} / {tag.label}"
    return export_asked(request, kind=Export.Kind.TAG, title=title, object_id=tag.pk)


def tag_export_table(query: QueryDict, object_id: int | None) -> Table:
    """The tag page's customers, filtered as on the page, all of them, for an export (run
    by a worker): streamed from the database in chunks."""
    tag = get_object_or_404(Tag, pk=object_id)
    filters = selectors.tag_page_filter(query, tag)
    yes, no = _("是"), _("否")

    def rows():
        for row in selectors.tag_customer_rows(tag=tag, filters=filters):
            pk, name, external, member, joined, days, revenue, last, tagged = row
            yield [
                pk,
                name,
                external or "",
                yes if member else no,
                wall_clock(joined),
                days if days is not None else 0,
                revenue,
                last,
                wall_clock(tagged),
            ]

    header = [
        *(_("客户ID"), _("姓名"), _("外部联系人ID"), _("私域会员"), _("入会时间")),
        *(_("购买天数"), _("净销售额（元）"), _("最近购买"), _("获得标签时间")),
    ]
    return Table(
        sheet=re.sub(r"[\[\]:*?/\\]", "_", tag.name) or "tag",  # what a sheet's title cannot hold
        header=header,
        rows=rows(),
        count=selectors.tag_customers(tag=tag, filters=filters).order_by().count,
        money=(6,),
    )


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def tag_customers_change(request: HttpRequest, tag_id: int) -> HttpResponse:
    """Add or remove a manual tag on the ticked customers, or queue adding it to every
    customer the page's filters select (a bulk tagging, followed on this page)."""
    tag = get_object_or_404(Tag.objects.select_related("group"), pk=tag_id)
    action = request.POST.get("action")
    back = reverse("tag_detail", args=[tag.pk])
    if query := _filter_query(request.POST):
        back += f"?{query}"
    if action == "add_filtered":
        return _bulk_asked(request, tag, BulkTagging.Source.TAG, QueryDict(query), back)
    if action not in ("add", "remove"):
        messages.error(request, _("未知的操作。"))
        return redirect(back)
    ids = [int(v) for v in request.POST.getlist("customer") if v.isdecimal()]
    try:
        changed = services.customer_tags_set(
            tag=tag, customer_ids=ids, add=action != "remove", by=request.user
        )
    except ValueError as error:  # not a manual tag: the reason names who maintains it
        messages.error(request, str(error))
        return redirect(back)
    if not ids:
        messages.error(request, _("没有选中任何客户。"))
        return redirect(back)
    if action == "remove":
        messages.success(request, _("已从 %(n)s 位客户移除标签。") % {"n": changed})
    else:
        messages.success(request, _("已给 %(n)s 位客户加上标签。") % {"n": changed})
    return redirect(back)


def _bulk_asked(request, tag: Tag, source: str, query: QueryDict, back: str) -> HttpResponse:
    """Queue a bulk tagging; to the tag's page, where it is followed."""
    try:
        bulk.bulk_tagging_request(user=request.user, tag=tag, source=source, query=query)
    except ValueError as error:  # not a manual tag, or nobody selected: the reason says
        messages.error(request, str(error))
        return redirect(back)
    messages.success(
        request,
        _("已开始在后台给筛选出的客户加上标签「%(tag)s」，进度见下方「批量加标签」。")
        % {"tag": tag.label},
    )
    return redirect(reverse("tag_detail", args=[tag.pk]) + "#bulk")


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def listed_customers_tag(request: HttpRequest) -> HttpResponse:
    """Queue adding a manual tag to every customer the console customer list's filters
    select (POST tag, and query: the list's query string); then to the tag's page."""
    query = QueryDict(request.POST.get("query", ""), mutable=True)
    query.pop("after", None)
    back = reverse("customers") + (f"?{query.urlencode()}" if query else "")
    tag_id = request.POST.get("tag", "")
    tag = (
        Tag.objects.select_related("group").filter(pk=int(tag_id)).first()
        if tag_id.isdecimal()
        else None
    )
    if tag is None:
        messages.error(request, _("请选择要加上的标签。"))
        return redirect(back)
    if refused := filters_refused(request, query):
        return refused
    return _bulk_asked(request, tag, BulkTagging.Source.CUSTOMERS, query, back)


def _count(number: int) -> str:
    return number_format(number, force_grouping=True)


def _bulk_progress(tagging: BulkTagging) -> str:
    """Where a bulk tagging is, in the reader's words."""
    if tagging.is_interrupted:
        return _("已中断：后台任务被终止，已加上的标签保留。可撤销，或重新加标签。")
    if tagging.status == BulkTagging.Status.QUEUED:
        return _("排队中：后台任务空闲后马上开始…")
    if tagging.status == BulkTagging.Status.RUNNING:
        if tagging.total is None:
            return _("进行中：正在筛选客户…")
        return _("进行中：已处理 %(done)s / %(total)s 位客户") % {
            "done": _count(tagging.done),
            "total": _count(tagging.total),
        }
    if tagging.status == BulkTagging.Status.FAILED:
        return _("失败：%(reason)s") % {"reason": tagging.failure}
    return tagging.get_status_display()


@permission_required(Perm.VIEW_CONSOLE)
def bulk_tagging_status(request: HttpRequest, pk: int) -> JsonResponse:
    tagging = get_object_or_404(BulkTagging, pk=pk)
    return JsonResponse(
        {
            "status": "interrupted" if tagging.is_interrupted else tagging.status,
            "rows": tagging.done,
            "total": tagging.total,
            "message": _bulk_progress(tagging),
        }
    )


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def bulk_tagging_undo(request: HttpRequest, pk: int) -> HttpResponse:
    """Queue the undo of a bulk tagging: its tags come off those who still carry them."""
    tagging = get_object_or_404(BulkTagging.objects.select_related("tag"), pk=pk)
    try:
        bulk.bulk_tagging_undo(user=request.user, bulk=tagging)
    except ValueError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, _("已开始撤销，进度见下方「批量加标签」。"))
    return redirect(reverse("tag_detail", args=[tagging.tag_id]) + "#bulk")


# -- system tag settings -------------------------------------------------------------------


def _settings_save(*, values: dict, by) -> None:
    """Keep the thresholds in the one settings row and retag everyone with them.
    (Belongs in tagging.services as `system_settings_save`.)"""
    with transaction.atomic():
        row = SystemTagSettings.objects.select_for_update().order_by("pk").first()
        if row is None:
            SystemTagSettings.objects.create(values=values, updated_by=by)
        else:
            row.values, row.updated_by = values, by
            row.save(update_fields=["values", "updated_by", "updated_at"])
        transaction.on_commit(services.schedule_full_retag)


@permission_required(Perm.VIEW_CONSOLE)
def tag_settings(request: HttpRequest) -> HttpResponse:
    current = current_settings()
    form = SystemTagSettingsForm(
        request.POST or None, initial=SystemTagSettingsForm.initial_from(current)
    )
    if request.method == "POST":
        _require(request, Perm.CHANGE_CONSOLE)
        if form.is_valid():
            _settings_save(values=form.values(), by=request.user)
            messages.success(request, _("系统标签设置已保存，正在全量重算标签。"))
            return redirect("tag_settings")
    defaults = SystemTagSettingsForm.initial_from(DEFAULTS)
    fields = [(field, defaults[field.name]) for field in form]
    return render(
        request,
        "tagging/settings.html",
        {
            "form": form,
            "fields": fields,
            "saved": SystemTagSettings.objects.select_related("updated_by").first(),
        },
    )


# -- the customer-tags fragment of the 360° page -------------------------------------------


@login_required
def customer_tags(request: HttpRequest, customer_id: int) -> HttpResponse:
    """The customer's tags and their history, as an HTML fragment the contacts page loads.
    Guides see their own customers only (404 otherwise); operators add and remove manual
    tags here (POST)."""
    user = request.user
    if not (user.has_perm(Perm.VIEW_CONSOLE) or user.has_perm(Perm.USE_GUIDE_APP)):
        raise PermissionDenied
    customer = get_object_or_404(Customer.objects.visible_to(user), pk=customer_id)
    error = None
    if request.method == "POST":
        _require(request, Perm.CHANGE_CONSOLE)
        tag_id = request.POST.get("tag", "")
        tag = get_object_or_404(Tag, pk=int(tag_id)) if tag_id.isdecimal() else None
        if customer.merged_into_id:  # their tags went with the merge
            error = _("这位客户已合并到 #%(pk)s，请在合并后的客户页改标签。") % {
                "pk": customer.merged_into_id
            }
        elif tag is None:
            error = _("请选择标签。")
        else:
            try:
                services.customer_tags_set(
                    tag=tag,
                    customer_ids=[customer.pk],
                    add=request.POST.get("action") != "remove",
                    by=user,
                )
            except ValueError as refused:
                error = str(refused)
        if request.headers.get("X-Requested-With") != "XMLHttpRequest":
            if error:
                messages.error(request, error)
            return redirect("customer_detail", pk=customer.pk)
    current = selectors.customer_tags(customer_id=customer.pk)
    for event in current.history:
        event.action_label = ACTION_LABELS.get(event.action, event.action)
        event.cause_label = CAUSE_LABELS.get(event.cause, event.cause)
    can_write = user.has_perm(Perm.CHANGE_CONSOLE) and not customer.merged_into_id
    return render(
        request,
        "tagging/_customer_tags.html",
        {
            "customer": customer,
            "groups": current.groups,
            "history": current.history,
            "addable": selectors.manual_tags_not_carried(customer_id=customer.pk)
            if can_write
            else [],
            "can_write": can_write,
            "error": error,
            "is_console_user": user.has_perm(Perm.VIEW_CONSOLE),
        },
        status=400 if error else 200,
    )
