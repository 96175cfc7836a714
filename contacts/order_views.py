"""Order pages: upload and import history, rejected rows as CSV, unmatched orders and
merge suggestions, customer merges and their undo."""

import csv
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import BadRequest
from django.core.paginator import Paginator
from django.db.models import Count, Exists, F, OuterRef, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, ngettext, pgettext
from django.views.decorators.http import require_POST

from contacts import selectors, services
from contacts.models import (
    Customer,
    CustomerMerge,
    MergeSuggestion,
    Order,
    OrderBinding,
    OrderImport,
    Product,
)
from contacts.order_files import CHANNEL_TITLES, CHANNELS, ORDER_CHANNEL_NAMES, OrderFileError
from contacts.order_files.sources import guard
from scrm.reasons import translated
from scrm.roles import Perm, permission_required


@permission_required(Perm.VIEW_CONSOLE)
def import_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(OrderImport.objects.select_related("imported_by"), 30).get_page(
        request.GET.get("page")
    )
    return render(
        request, "contacts/import_list.html", {"page": page, "channels": CHANNEL_TITLES.items()}
    )


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def import_upload(request: HttpRequest) -> HttpResponse:
    files = request.FILES.getlist("files")
    channel = request.POST.get("channel") or None
    if not files:
        return JsonResponse({"error": _("请选择要导入的文件。")}, status=400)
    if channel not in (None, *CHANNELS):
        error = _("未知的渠道：%(channel)s") % {"channel": channel}
        return JsonResponse({"error": error}, status=400)
    record = services.order_upload_accept(files=files, channel=channel, imported_by=request.user)
    return JsonResponse({"id": record.pk, "status_url": f"/orders/imports/{record.pk}/status"})


@permission_required(Perm.VIEW_CONSOLE)
def import_status(request: HttpRequest, pk: int) -> JsonResponse:
    record = get_object_or_404(OrderImport, pk=pk)
    rows_read = services.order_import_progress(record=record)
    if record.status == OrderImport.Status.QUEUED:
        message = _("排队中：后台任务正忙，空闲后马上开始导入…")
    elif record.status == OrderImport.Status.RUNNING:
        message = _("正在校验和导入…已读取 %(rows)s 行") % {"rows": rows_read}
    else:  # finished: the page shows its report
        message = record.get_status_display()
    return JsonResponse(
        {
            "status": record.status,
            "message": message,
            "rows_read": rows_read,
            "inserted": record.inserted,
            "updated": record.updated,
            "unchanged": record.unchanged,
            "rejected": record.rejected,
            "detail_url": f"/orders/imports/{record.pk}/",
        }
    )


@permission_required(Perm.VIEW_CONSOLE)
def import_detail(request: HttpRequest, pk: int) -> HttpResponse:
    record = get_object_or_404(OrderImport, pk=pk)
    return render(request, "contacts/import_detail.html", {"record": record})


@permission_required(Perm.VIEW_CONSOLE)
def import_errors_csv(request: HttpRequest, pk: int) -> HttpResponse:
    record = get_object_or_404(OrderImport, pk=pk)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{record.pk}-errors.csv"'
    response.write("\ufeff")  # so Excel opens it as UTF-8
    writer = csv.writer(response)
    writer.writerow([pgettext("one file", "文件"), _("行号"), _("订单号"), _("列"), _("原因")])
    for error in record.errors_by_row:
        writer.writerow(
            [
                guard(error.get("file", "")),
                error["row"],
                guard(error.get("order_id", "")),
                guard(error["column"]),
                guard(error["reason"]),
            ]
        )
    return response


ROW_COLUMN, REASON_COLUMN = gettext_noop("原行号"), gettext_noop("导入错误")


def _added_columns() -> set[str]:
    """The names of the columns a download of rejected rows adds, in every language."""
    names = set()
    for language, _name in settings.LANGUAGES:
        with translation.override(language):
            names |= {_(ROW_COLUMN), _(REASON_COLUMN)}
    return names


@permission_required(Perm.CHANGE_CONSOLE)  # whole rows, full phones: for those who import
def import_rejected_rows_csv(request: HttpRequest, pk: int, index: int) -> HttpResponse:
    """The rejected rows of one of the import's files, with their cells as read and
    the file's header, and why each was rejected: corrected, the file imports again
    (the columns added are not read)."""
    record = get_object_or_404(OrderImport, pk=pk)
    if record.rejected_cells_state != "kept" or index >= len(record.rejected_cells):
        raise Http404  # none, or past REJECTED_CELLS_DAYS (cleared within the hour)
    rejected = record.rejected_cells[index]
    reasons: dict[int, list[str]] = {}
    for error in record.errors_by_row:
        if error.get("file") == rejected["file"]:
            text = _("%(column)s：%(reason)s") % error if error["column"] else error["reason"]
            reasons.setdefault(error["row"], []).append(text)
    stem = rejected["file"].rsplit(".", 1)[0]
    response = HttpResponse(
        content_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": content_disposition_header(
                as_attachment=True, filename=f"{stem}-rejected.csv"
            )
        },
    )
    response.write("\ufeff")  # so Excel opens it as UTF-8
    writer = csv.writer(response)
    # Two columns come first, before the file's own (the reader does not read them):
    # the row it was, and why it was rejected. A file downloaded so before has them
    # already: they are replaced, not added again. A row with more cells than the
    # header keeps them all, past the header's end.
    width = len(rejected["header"])
    added = _added_columns()
    kept = [i for i, name in enumerate(rejected["header"]) if name not in added]
    header = [rejected["header"][i] for i in kept]
    writer.writerow([_(ROW_COLUMN), _(REASON_COLUMN), *map(guard, header)])
    for row, cells in rejected["rows"]:
        shown = [cells[i] for i in kept] + cells[width:]
        reason = guard(_("；").join(reasons.get(row, [])))
        writer.writerow([row, reason, *map(guard, shown)])
    return response


PRODUCTS_PER_PAGE = 50
HISTORY_PER_PAGE = 50  # merges, and bindings, on the merges page
SUGGESTION_GROUPS_SHOWN = 30  # more once these are decided: the orders stay in sight
DECIDED_GROUPS_SHOWN = 20  # the latest confirmations, and rejections, each with its undo


@permission_required(Perm.VIEW_CONSOLE)
def product_list(request: HttpRequest) -> HttpResponse:
    """The product catalogue by sku (found by sku, name or attribute), and its upload
    (operators)."""
    products = Product.objects.order_by("sku")
    text = request.GET.get("q", "").strip()
    if text:
        products = products.filter(
            Q(sku__istartswith=text)
            | Q(name__icontains=text)
            | Q(category=text)
            | Q(material=text)
            | Q(style=text)
        )
    return render(
        request,
        "contacts/product_list.html",
        {
            "page": Paginator(products, PRODUCTS_PER_PAGE).get_page(request.GET.get("page")),
            "columns": services.PRODUCT_COLUMNS,
            "q": text,
            "query": urlencode({"q": text}) if text else "",
        },
    )


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def product_upload(request: HttpRequest) -> HttpResponse:
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, _("请选择商品文件。"))
        return redirect("products")
    try:
        result = services.products_upload(upload=upload)
    except OrderFileError as error:
        messages.error(request, translated(error.args[0]))
        return redirect("products")
    messages.success(
        request,
        _("商品 %(products)s 个（新增或改变 %(changed)s 个），补全了 %(lines)s 个订单行。")
        % {
            "products": result["products"],
            "changed": result["changed"],
            "lines": result["lines_filled"],
        },
    )
    if result["errors"]:
        shown = "；".join(_("第 %(row)s 行：%(reason)s") % error for error in result["errors"][:10])
        messages.warning(
            request,
            ngettext("%(n)s 行未导入：%(rows)s", "%(n)s 行未导入：%(rows)s", len(result["errors"]))
            % {"n": len(result["errors"]), "rows": shown},
        )
    return redirect("products")


@permission_required(Perm.VIEW_CONSOLE)
def unmatched_orders(request: HttpRequest) -> HttpResponse:
    """The merge suggestions to decide, then the orders matched to nobody: by channel, or
    found by an order number (a sub-order's or its checkout's) or the buyer's name."""
    channel = request.GET.get("channel", "")
    if channel and channel not in ORDER_CHANNEL_NAMES:
        raise Http404("no such channel")
    q = request.GET.get("q", "").strip()
    pending_suggestion = MergeSuggestion.objects.filter(
        order=OuterRef("pk"), status=MergeSuggestion.Status.PENDING
    )
    # Newest payments first; orders without one (cancelled before paying) after them.
    orders = (
        Order.objects.filter(customer__isnull=True)
        .annotate(suggested=Exists(pending_suggestion))
        .order_by(F("paid_at").desc(nulls_last=True), "-id")
    )
    if channel:
        orders = orders.filter(channel=channel)
    if q:
        orders = orders.filter(
            Q(channel_order_id=q) | Q(parent_order_id=q) | Q(buyer_name__contains=q)
        )
    pending = MergeSuggestion.objects.filter(status=MergeSuggestion.Status.PENDING).count()
    groups = selectors.merge_suggestion_groups(limit=SUGGESTION_GROUPS_SHOWN)
    by_channel = [
        (row["channel"], ORDER_CHANNEL_NAMES.get(row["channel"], row["channel"]), row["n"])
        for row in Order.objects.filter(customer__isnull=True)
        .values("channel")
        .annotate(n=Count("id"))
        .order_by("channel")
    ]
    return render(
        request,
        "contacts/unmatched_orders.html",
        {
            "page": Paginator(orders, 50).get_page(request.GET.get("page")),
            "suggestion_groups": groups,
            "confirmed_groups": selectors.decided_suggestion_groups(
                status=MergeSuggestion.Status.CONFIRMED, limit=DECIDED_GROUPS_SHOWN
            ),
            "rejected_groups": _rejected_groups(),
            "suggestions_pending": pending,
            "suggestions_hidden": pending - sum(len(group) for group in groups),
            "by_channel": by_channel,
            "channel": channel,
            "q": q,
            "unmatched_total": sum(count for _name, _title, count in by_channel),
            "page_query": urlencode({k: v for k, v in (("channel", channel), ("q", q)) if v}),
        },
    )


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def order_assign(request: HttpRequest, pk: int) -> HttpResponse:
    """An operator puts an unmatched order (and its checkout's other sub-orders) on the
    customer numbered in the form; undone from the bindings list."""
    order = get_object_or_404(Order, pk=pk)
    back = request.POST.get("back", "")
    target = reverse("unmatched_orders") + (f"?{back}" if back else "") + "#orders"
    number = request.POST.get("customer", "").strip().lstrip("#")
    customer = Customer.objects.filter(pk=int(number)).first() if number.isdecimal() else None
    if customer is None:
        messages.error(request, _("找不到客户编号 %(number)s。") % {"number": number or "—"})
        return redirect(target)
    try:
        orders = services.order_assign(order=order, customer=customer, by=request.user)
    except (ValueError, PermissionError) as error:
        messages.error(request, str(error))
        return redirect(target)
    messages.success(
        request,
        _("订单 %(orders)s 已归到客户 %(customer)s，可在客户合并页的绑定记录里撤销。")
        % {
            "orders": _("、").join(o.channel_order_id for o in orders),
            "customer": customer.label,
        },
    )
    return redirect(target)


def _rejected_groups() -> list[tuple[list[MergeSuggestion], int | None, int | None]]:
    """The latest rejections, each with the customer it made of a buyer's account (then
    undone by a merge, not here: `merge_suggestions_undo`), and whom that customer has
    been merged into since (the merge done)."""
    groups = selectors.decided_suggestion_groups(
        status=MergeSuggestion.Status.REJECTED, limit=DECIDED_GROUPS_SHOWN
    )
    made = {
        group[0].pk: next((s.undo["created"] for s in group if s.undo.get("created")), None)
        for group in groups
    }
    merged = dict(
        Customer.objects.filter(pk__in=[pk for pk in made.values() if pk])
        .exclude(merged_into=None)
        .values_list("pk", "merged_into")
    )
    return [(group, made[group[0].pk], merged.get(made[group[0].pk])) for group in groups]


def _suggestion_group(request: HttpRequest, pk: int) -> list[MergeSuggestion]:
    """The suggestion `pk` and those listed with it (`also`), all for one customer;
    raises BadRequest or Http404 otherwise."""
    try:
        ids = {pk, *(int(value) for value in request.POST.getlist("also"))}
    except ValueError:
        raise BadRequest("also: suggestion ids") from None
    suggestions = list(MergeSuggestion.objects.filter(pk__in=ids).select_related("customer"))
    if len(suggestions) < len(ids):
        raise Http404
    if len({suggestion.customer_id for suggestion in suggestions}) > 1:
        raise BadRequest("also: suggestions of one customer")
    return sorted(suggestions, key=lambda suggestion: suggestion.pk != pk)  # the lead first


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def suggestion_decide(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm or reject a suggestion and those of the same buyer listed with it (`also`)."""
    suggestions = _suggestion_group(request, pk)
    lead = suggestions[0]
    confirm = request.POST.get("decision") == "confirm"
    try:
        own = services.merge_suggestions_decide(
            suggestions=suggestions, confirm=confirm, by=request.user
        )
    except ValueError as error:
        messages.error(request, str(error))
        return redirect("unmatched_orders")
    if confirm:
        message = ngettext(
            "已确认：%(n)s 笔订单归到客户 %(customer)s。",
            "已确认：%(n)s 笔订单归到客户 %(customer)s。",
            len(suggestions),
        ) % {"n": len(suggestions), "customer": lead.customer.label}
    else:
        message = ngettext("已拒绝 %(n)s 条建议。", "已拒绝 %(n)s 条建议。", len(suggestions)) % {
            "n": len(suggestions)
        }
        if own:
            message += _("订单 %(orders)s 已归到其买家账号自己的客户。") % {
                "orders": _("、").join(order.channel_order_id for order in own)
            }
    messages.success(request, message)
    return redirect("unmatched_orders")


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def suggestion_undo(request: HttpRequest, pk: int) -> HttpResponse:
    """Undo a decision: the suggestion and those decided with it (`also`)."""
    suggestions = _suggestion_group(request, pk)
    rejected = suggestions[0].status == MergeSuggestion.Status.REJECTED
    try:
        services.merge_suggestions_undo(suggestions=suggestions)
    except ValueError as error:
        messages.error(request, str(error))
    else:
        if rejected:
            message = ngettext(
                "已撤销拒绝：%(n)s 条建议重新待确认。",
                "已撤销拒绝：%(n)s 条建议重新待确认。",
                len(suggestions),
            )
        else:
            message = ngettext(
                "已撤销：%(n)s 笔订单回到未匹配订单，建议重新待确认。",
                "已撤销：%(n)s 笔订单回到未匹配订单，建议重新待确认。",
                len(suggestions),
            )
        messages.success(request, message % {"n": len(suggestions)})
    return redirect("unmatched_orders")


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def customer_merge(request: HttpRequest, pk: int) -> HttpResponse:
    keep = get_object_or_404(Customer, pk=pk)
    number = request.POST.get("absorb", "").strip().lstrip("#")
    absorb = Customer.objects.filter(pk=int(number)).first() if number.isdecimal() else None
    if absorb is None:
        messages.error(request, _("找不到要合并的客户 %(number)s。") % {"number": number or "—"})
        return redirect("customer_detail", pk=keep.pk)
    try:
        services.customer_merge(keep=keep, absorb=absorb, by=request.user)
    except ValueError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, _("已把客户 #%(pk)s 合并到此客户。") % {"pk": absorb.pk})
    return redirect("customer_detail", pk=keep.pk)


@permission_required(Perm.VIEW_CONSOLE)
def merge_list(request: HttpRequest) -> HttpResponse:
    """The merges of customers, and the orders guides bound, each with its undo."""
    merges = Paginator(
        CustomerMerge.objects.select_related("kept", "absorbed", "merged_by").order_by(
            "-merged_at", "-id"
        ),
        HISTORY_PER_PAGE,
    ).get_page(request.GET.get("page"))
    bindings = Paginator(
        OrderBinding.objects.select_related("order", "customer", "guide", "bound_by", "undone_by"),
        HISTORY_PER_PAGE,
    ).get_page(request.GET.get("bindings_page"))
    # Each list's pager keeps the other's page.
    return render(
        request,
        "contacts/merge_list.html",
        {
            "merges": merges,
            "bindings": bindings,
            "merges_query": urlencode({"bindings_page": bindings.number}),
            "bindings_query": urlencode({"page": merges.number}),
        },
    )


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def binding_undo(request: HttpRequest, pk: int) -> HttpResponse:
    binding = get_object_or_404(OrderBinding, pk=pk)
    try:
        services.order_binding_undo(binding=binding, by=request.user)
        messages.success(request, _("绑定已撤销，订单回到未匹配订单。"))
    except ValueError as error:
        messages.error(request, str(error))
    return redirect("merge_list")


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def merge_undo(request: HttpRequest, pk: int) -> HttpResponse:
    merge = get_object_or_404(CustomerMerge, pk=pk)
    try:
        services.customer_merge_undo(merge=merge, by=request.user)
        messages.success(request, _("合并已撤销。"))
    except ValueError as error:
        messages.error(request, str(error))
    return redirect("merge_list")
