"""Pages: the customer list and 360° page (console and guide), and the sync page."""

import base64
import json
from datetime import datetime
from itertools import islice

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import BooleanField, ExpressionWrapper, F, Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from contacts import selectors, services
from contacts.forms import PurchaseFilterForm
from contacts.listing import (
    console_customers,
    filtered_customers,
    filters_refused,
    guide_phone_search_refused,
)
from contacts.models import (
    CorpTag,
    Customer,
    CustomerFacts,
    CustomerFactsPending,
    CustomerGroupMember,
    CustomerIdentity,
    Guide,
    Order,
    Relationship,
    RelationshipEvent,
    Store,
    SyncRun,
)
from scrm.exports import Table, export_asked
from scrm.models import CallbackEvent, Export
from scrm.roles import Perm, permission_required
from scrm.spreadsheets import wall_clock

PAGE_SIZE = 50
COUNT_CAP = 10_000  # counting stops here: "10,000+" stays instant at millions of rows
EXPORT_CHUNK = 2000  # customers summarised per three queries
ORDERS_PER_PAGE = 50  # a customer's orders on their page
MERGE_CANDIDATES = 20  # customers found to merge in, at most
ORDERINGS = {
    "-joined_at": ("-joined_at", "-id"),
    "joined_at": ("joined_at", "id"),
    "name": ("name", "id"),
    "-created_at": ("-created_at", "-id"),
}


def _encode_cursor(values: list) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _after_cursor(queryset, ordering: tuple[str, str], cursor: str):
    """Keyset paging: rows after the last one shown, so page 1,000 costs what page 1 does."""
    try:
        value, last_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError) as error:
        raise Http404("bad page cursor") from error
    field = ordering[0].lstrip("-")
    descending = ordering[0].startswith("-")
    if field.endswith("_at") and value is not None:
        value = datetime.fromisoformat(value)
    compare = "lt" if descending else "gt"
    if value is None:  # NULLs sort last either way (see _ordered)
        return queryset.filter(**{f"{field}__isnull": True, f"id__{compare}": last_id})
    after = (
        Q(**{f"{field}__{compare}": value})
        | Q(**{field: value, f"id__{compare}": last_id})
        | Q(**{f"{field}__isnull": True})
    )
    return queryset.filter(after)


def _ordered(queryset, ordering: tuple[str, str]):
    """Order with NULLs last in both directions, matching the indexes and the keyset."""
    field, tie = ordering
    expression = F(field.lstrip("-"))
    expression = (
        expression.desc(nulls_last=True)
        if field.startswith("-")
        else expression.asc(nulls_last=True)
    )
    return queryset.order_by(expression, tie)


def _ordering(params: QueryDict) -> tuple[str, str]:
    return ORDERINGS.get(params.get("sort", ""), ORDERINGS["-joined_at"])


def _page(request: HttpRequest, queryset) -> dict:
    ordering = _ordering(request.GET)
    counted = queryset.order_by().values("pk")[: COUNT_CAP + 1].count()
    queryset = _ordered(queryset, ordering)
    if cursor := request.GET.get("after"):
        queryset = _after_cursor(queryset, ordering, cursor)
    rows = list(queryset[: PAGE_SIZE + 1])
    has_next = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    _summarise(rows)
    next_cursor = None
    if has_next:
        last = rows[-1]
        next_cursor = _encode_cursor([getattr(last, ordering[0].lstrip("-")), last.pk])
    query = request.GET.copy()
    query.pop("after", None)
    return {
        "customers": rows,
        "total": min(counted, COUNT_CAP),
        "total_capped": counted > COUNT_CAP,
        "next_cursor": next_cursor,
        "query": query.urlencode(),
        "sort": request.GET.get("sort", "-joined_at"),
    }


def _summarise(customers: list[Customer]) -> None:
    """What tells a page of customers apart (five 潘瑶 are five people): each one's
    masked phone, live guides, and purchase summary, in three queries for the page."""
    ids = [customer.pk for customer in customers]
    facts = {f.customer_id: f for f in CustomerFacts.objects.filter(customer_id__in=ids)}
    phones: dict[int, str] = {}
    for customer_id, display in (
        CustomerIdentity.objects.filter(customer_id__in=ids, kind=CustomerIdentity.Kind.PHONE_HASH)
        .order_by("customer_id", "id")
        .values_list("customer_id", "display")
    ):
        phones.setdefault(customer_id, display)
    guides: dict[int, list[str]] = {}
    for customer_id, name in (
        Relationship.objects.filter(customer_id__in=ids, is_active=True)
        .order_by("customer_id", "added_at")
        .values_list("customer_id", "guide__name")
    ):
        guides.setdefault(customer_id, []).append(name)
    for customer in customers:
        customer.summary = facts.get(customer.pk)
        customer.phone = phones.get(customer.pk, "")
        customer.guide_names = guides.get(customer.pk, [])


@permission_required(Perm.VIEW_CONSOLE)
def customer_list(request: HttpRequest) -> HttpResponse:
    queryset, form = console_customers(request.GET)
    context = _page(request, queryset)
    text = request.GET.get("q", "").strip()
    context.update(
        # An order number of an order that matched nobody: where to find it instead.
        unmatched_order=text
        and not context["customers"]
        and Order.objects.filter(customer__isnull=True, channel_order_id=text).first(),
        guides=Guide.objects.active().only("id", "name", "wecom_userid"),
        stores=Store.objects.only("id", "name"),
        tags=CorpTag.objects.filter(is_deleted=False).select_related("group"),
        # the tags an operator may add to every customer the filters select
        manual_tags=_manual_tags() if request.user.has_perm(Perm.CHANGE_CONSOLE) else [],
        filters=request.GET,
        form=form,
    )
    return render(request, "contacts/customer_list.html", context)


def _manual_tags() -> list[tuple[int, str]]:
    tag_filter = selectors.tag_filter()
    return tag_filter.manual_tags() if tag_filter else []


@require_POST
@permission_required(Perm.VIEW_CONSOLE)
def customer_export(request: HttpRequest) -> HttpResponse:
    """Queue an export of the list as the page shows it (its query string comes along),
    to be downloaded from the exports page when a worker has written it."""
    query = QueryDict(request.POST.get("query", ""))
    if refused := filters_refused(request, query):
        return refused
    return export_asked(request, kind=Export.Kind.CUSTOMERS, title="")


def customer_export_table(query: QueryDict, object_id: int | None = None) -> Table:
    """The list's customers, filtered and sorted as on the page, for an export (run by a
    worker): read and summarised `EXPORT_CHUNK` at a time, so memory stays flat."""
    queryset = console_customers(query)[0]
    yes, no, comma = _("是"), _("否"), _("、")

    def rows():
        customers = _ordered(queryset, _ordering(query)).iterator(chunk_size=EXPORT_CHUNK)
        while chunk := list(islice(customers, EXPORT_CHUNK)):
            _summarise(chunk)
            for customer in chunk:
                facts = customer.summary
                yield [
                    customer.pk,
                    customer.name,
                    customer.phone,  # the identity's masked display (no full number is kept)
                    comma.join(customer.guide_names),
                    yes if customer.is_member else no,
                    wall_clock(customer.joined_at),
                    facts.purchase_days if facts else 0,
                    facts.orders if facts else 0,
                    facts.net_revenue if facts else 0,
                    facts.last_purchase_on if facts else None,
                ]

    header = [
        *(_("客户ID"), _("姓名"), _("手机号"), _("跟进导购"), _("私域会员"), _("入会时间")),
        *(_("购买天数"), _("订单数"), _("净销售额（元）"), _("最近购买")),
    ]
    return Table(
        sheet=_("客户"),
        header=header,
        rows=rows(),
        count=queryset.order_by().count,
        money=(8,),
    )


def _customer_context(request: HttpRequest, customer: Customer) -> dict:
    relationships = (
        Relationship.objects.filter(customer=customer)
        .select_related("guide__store")
        .prefetch_related(Prefetch("events", RelationshipEvent.objects.order_by("-occurred_at")))
        .order_by("-is_active", "added_at")
    )
    tag_ids = {tag_id for r in relationships for tag_id in r.wecom_tag_ids}
    return {
        "customer": customer,
        "facts": CustomerFacts.objects.filter(customer=customer).first(),
        # changed orders (an import, a merge, a binding): the facts are being made again
        "facts_pending": CustomerFactsPending.objects.filter(customer_id=customer.pk).exists(),
        "identities": customer.identities.order_by("kind"),
        "relationships": relationships,
        "tags": CorpTag.objects.filter(wecom_tag_id__in=tag_ids).select_related("group"),
        "groups": CustomerGroupMember.objects.filter(customer=customer).select_related("group"),
        # Every order, newest first, a page at a time (a heavy buyer has hundreds).
        "orders": Paginator(
            customer.orders.prefetch_related("lines").order_by(
                F("paid_at").desc(nulls_last=True), "-id"
            ),
            ORDERS_PER_PAGE,
        ).get_page(request.GET.get("page")),
    }


@permission_required(Perm.VIEW_CONSOLE)
def customer_detail(request: HttpRequest, pk: int) -> HttpResponse:
    customer = get_object_or_404(Customer, pk=pk)
    context = _customer_context(request, customer)
    # Who to merge in: found as the list finds customers (name, phone, order number, …).
    if merge_q := request.GET.get("merge_q", "").strip():
        found = Q(pk__in=Customer.objects.search(merge_q).values("pk"))
        if (number := merge_q.removeprefix("#")).isdecimal() and len(number) < 16:
            found |= Q(pk=int(number))  # the customer number the merges page shows
        # Those who can be merged in first (two WeCom contacts cannot), then the exact name.
        ordering = [F("same_name").desc(), "pk"]
        if customer.external_userid:
            ordering.insert(0, F("is_contact").asc())
        candidates = list(
            Customer.objects.filter(found)
            .filter(merged_into__isnull=True)
            .exclude(pk=customer.pk)
            .alias(
                is_contact=ExpressionWrapper(
                    Q(external_userid__isnull=False), output_field=BooleanField()
                ),
                same_name=ExpressionWrapper(Q(name=merge_q), output_field=BooleanField()),
            )
            .order_by(*ordering)[: MERGE_CANDIDATES + 1]
        )
        _summarise(candidates)
        context.update(
            merge_q=merge_q,
            merge_candidates=candidates[:MERGE_CANDIDATES],
            merge_more=len(candidates) > MERGE_CANDIDATES,
        )
    return render(request, "contacts/customer_detail.html", context)


@permission_required(Perm.USE_GUIDE_APP)
def guide_customer_list(request: HttpRequest) -> HttpResponse:
    """A guide's own customers, with the console's filters by what they bought (which
    of mine bought lately, which have gone quiet), without tags and colleagues."""
    form = PurchaseFilterForm(request.GET, tag_filter=None)
    queryset = form.apply(
        filtered_customers(request.GET, Customer.objects.visible_to(request.user).unmerged())
    )
    if refusal := guide_phone_search_refused(request.user, request.GET.get("q", "")):
        messages.error(request, refusal)
        queryset = queryset.none()
    context = _page(request, queryset)
    context.update(form=form, filters=request.GET)
    return render(request, "contacts/guide_customer_list.html", context)


@permission_required(Perm.USE_GUIDE_APP)
def guide_customer_detail(request: HttpRequest, pk: int) -> HttpResponse:
    customer = get_object_or_404(Customer.objects.visible_to(request.user), pk=pk)
    # Colleagues who follow the customer too are listed, their own notes (remark and
    # description) are not: those are each guide's (console users see them all, as in
    # the API).
    guide = None if request.user.has_perm(Perm.VIEW_CONSOLE) else request.user.guide
    context = _customer_context(request, customer) | {"notes_of": guide}
    return render(request, "contacts/guide_customer_detail.html", context)


@permission_required(Perm.VIEW_CONSOLE)
def sync_page(request: HttpRequest) -> HttpResponse:
    churn = (
        RelationshipEvent.objects.filter(kind=RelationshipEvent.Kind.DELETED_BY_CUSTOMER)
        .select_related("relationship__customer", "relationship__guide")
        .order_by("-occurred_at")[:50]
    )
    return render(
        request,
        "contacts/sync.html",
        {
            "runs": SyncRun.objects.all()[:20],
            "running": SyncRun.objects.filter(status=SyncRun.Status.RUNNING).exists(),
            "churn_alerts": churn,
            "callback_events": CallbackEvent.objects.order_by("-received_at")[:50],
        },
    )


@require_POST
@permission_required(Perm.CHANGE_CONSOLE)
def sync_now(request: HttpRequest) -> HttpResponse:
    if not SyncRun.objects.filter(status=SyncRun.Status.RUNNING).exists():
        run = services.sync_run_start(triggered_by=request.user.username)
        services.sync_run_enqueue(run=run)
    return redirect("sync")
