"""Reads for the tag pages and the API: tags with their customer counts, a tag's
customers (filtered, for the page and its exports), one customer's tags and history."""

from dataclasses import dataclass

from django.db.models import Count, Exists, IntegerField, OuterRef, Prefetch, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404
from django.shortcuts import get_object_or_404

from contacts.models import Customer, Guide
from tagging.models import CustomerTag, CustomerTagEvent, Tag, TagGroup, TagRule

HISTORY_LIMIT = 100


def tags_with_counts():
    """Tags with `customers`: how many carry each now. A correlated count per tag on the
    (tag, customer) unique index: an index-only scan of that tag's assignments, evaluated
    only for the rows returned (so a page of the API counts only its own tags)."""
    count = (
        CustomerTag.objects.filter(tag=OuterRef("pk"))
        .order_by()
        .values("tag")
        .annotate(n=Count("*"))
        .values("n")
    )
    return Tag.objects.annotate(
        customers=Coalesce(Subquery(count, output_field=IntegerField()), 0)
    ).select_related("group")


def tag_groups_with_tags():
    """Every group with its tags (their rule, if any, and customer counts): two queries."""
    return TagGroup.objects.prefetch_related(
        Prefetch("tags", tags_with_counts().select_related("rule", "group"))
    )


def rules_listed():
    return TagRule.objects.select_related("tag__group", "updated_by").order_by(
        "tag__group__order", "tag__order", "tag_id"
    )


def editable_groups():
    """Groups operators put their own tags in: not the ones a system segment computes or
    that mirror WeCom (evaluation owns every tag of those)."""
    return TagGroup.objects.filter(system_key="")


def manual_tags():
    return Tag.objects.filter(source=Tag.Source.MANUAL).select_related("group")


@dataclass(frozen=True)
class CustomerFilter:
    """The tag page's filters; `everyone` lists all customers (to add a manual tag)
    instead of those carrying the tag."""

    text: str = ""
    guide: Guide | None = None
    is_member: bool | None = None
    everyone: bool = False


def tag_page_filter(params, tag: Tag) -> CustomerFilter:
    """The tag page's filters from its query string (the page, its export, its bulk
    tagging); Http404 for a guide that is not there (any more)."""
    guide = None
    if guide_id := params.get("guide", ""):
        if not guide_id.isdecimal():
            raise Http404("bad guide")
        guide = get_object_or_404(Guide, pk=int(guide_id))
    member = {"yes": True, "no": False}.get(params.get("member", ""))
    return CustomerFilter(
        text=params.get("q", "").strip(),
        guide=guide,
        is_member=member,
        everyone=params.get("show") == "all" and tag.source == Tag.Source.MANUAL,
    )


def tag_customers(*, tag: Tag, filters: CustomerFilter):
    """The customers the tag page shows (and exports), newest id first, with their facts
    and, as `tagged_at`, when they got the tag (None: they do not carry it)."""
    assignment = CustomerTag.objects.filter(tag=tag, customer=OuterRef("pk"))
    queryset = Customer.objects.filter(merged_into__isnull=True).annotate(
        tagged_at=Subquery(assignment.values("added_at")[:1])
    )
    if not filters.everyone:
        queryset = queryset.filter(Exists(assignment))
    if filters.text:
        queryset = queryset.search(filters.text)
    if filters.guide is not None:
        queryset = queryset.followed_by(filters.guide)
    if filters.is_member is not None:
        queryset = queryset.filter(is_member=filters.is_member)
    return queryset.select_related("facts").order_by("-id")


def tag_customer_rows(*, tag: Tag, filters: CustomerFilter):
    """The export's rows as tuples, streamed from the database in chunks."""
    return (
        tag_customers(tag=tag, filters=filters)
        .values_list(
            "id",
            "name",
            "external_userid",
            "is_member",
            "joined_at",
            "facts__purchase_days",
            "facts__net_revenue",
            "facts__last_purchase_on",
            "tagged_at",
        )
        .iterator(chunk_size=2000)
    )


class OwnTagFilter:
    """The console customer list's filter by our own tags (registered with contacts):
    every tag but the mirrored WeCom corp tags, which that list filters by already;
    and the manual tags it may add to the customers it selects."""

    def choices(self) -> list[tuple[int, str]]:
        tags = Tag.objects.exclude(source=Tag.Source.WECOM).select_related("group")
        return [(tag.pk, f"{tag.group.label} / {tag.label}") for tag in tags]

    def carriers(self, tag_id: int):
        # A semi-join on customer_tag_unique (tag, customer): that tag's rows only.
        return CustomerTag.objects.filter(tag_id=tag_id).values("customer_id")

    def manual_tags(self) -> list[tuple[int, str]]:
        """The tags an operator sets by hand, for the list to add to the customers it
        selects (`tagging.views.listed_customers_tag`)."""
        tags = Tag.objects.filter(source=Tag.Source.MANUAL, group__system_key="")
        tags = tags.select_related("group")
        return [(tag.pk, f"{tag.group.label} / {tag.label}") for tag in tags]


@dataclass
class CustomerTags:
    groups: list[tuple[TagGroup, list[CustomerTag]]]
    history: list[CustomerTagEvent]


def customer_tags(*, customer_id: int) -> CustomerTags:
    """A customer's current tags grouped by tag group (in group order), and the latest
    changes: two queries."""
    assignments = (
        CustomerTag.objects.filter(customer_id=customer_id)
        .select_related("tag__group")
        .order_by("tag__group__order", "tag__group_id", "tag__order", "tag_id")
    )
    groups: list[tuple[TagGroup, list[CustomerTag]]] = []
    for assignment in assignments:
        if not groups or groups[-1][0].pk != assignment.tag.group_id:
            groups.append((assignment.tag.group, []))
        groups[-1][1].append(assignment)
    history = list(
        CustomerTagEvent.objects.filter(customer_id=customer_id)
        .select_related("tag__group", "by")
        .order_by("-at", "-id")[:HISTORY_LIMIT]
    )
    return CustomerTags(groups=groups, history=history)


def manual_tags_not_carried(*, customer_id: int):
    return (
        manual_tags()
        .exclude(assignments__customer_id=customer_id)
        .order_by("group__order", "group_id", "order", "id")
    )
