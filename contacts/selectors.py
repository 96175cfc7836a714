"""Reads of contacts that pages share or that take more than a queryset."""

from typing import Protocol

from django.db.models import Max, QuerySet

from contacts.models import MergeSuggestion


class TagFilter(Protocol):
    """Our own tags (the tagging app's), for the customer list to filter by: `choices`
    are (tag id, label) pairs, `carriers` the ids of the customers carrying one (a
    `values("customer_id")` query, used as a subquery); `manual_tags` the (tag id,
    label) pairs of the tags the list may add to the customers it selects."""

    def choices(self) -> list[tuple[int, str]]: ...

    def carriers(self, tag_id: int) -> QuerySet: ...

    def manual_tags(self) -> list[tuple[int, str]]: ...


_tag_filter: TagFilter | None = None


def register_tag_filter(tag_filter: TagFilter) -> None:
    """The tagging app registers in `AppConfig.ready()` (contacts knows no app)."""
    global _tag_filter
    _tag_filter = tag_filter


def tag_filter() -> TagFilter | None:
    return _tag_filter


def merge_suggestion_groups(*, limit: int) -> list[list[MergeSuggestion]]:
    """Pending merge suggestions, one group per buyer (masked phone and name) and
    suggested customer, the `limit` groups with the latest suggestions first: a buyer's
    orders (a Douyin checkout is several sub-orders) are decided together."""
    pending = MergeSuggestion.objects.filter(status=MergeSuggestion.Status.PENDING)
    keys = list(
        pending.values_list("customer_id", "order__buyer_phone_masked", "order__buyer_name")
        .annotate(latest=Max("created_at"))
        .order_by("-latest", "customer_id")[:limit]
    )
    groups: dict[tuple, list[MergeSuggestion]] = {key[:3]: [] for key in keys}
    chosen = pending.filter(customer_id__in={key[0] for key in keys})
    for suggestion in chosen.select_related("order", "customer").order_by("-created_at", "pk"):
        order = suggestion.order
        key = (suggestion.customer_id, order.buyer_phone_masked, order.buyer_name)
        if key in groups:
            groups[key].append(suggestion)
    return list(groups.values())


def decided_suggestion_groups(*, status: str, limit: int) -> list[list[MergeSuggestion]]:
    """The latest confirmations or rejections, one group per decision (the suggestions
    decided together, for one customer), newest first: each can be undone together
    (those decided before undo was kept, or rejected as moot or by a confirmation, are
    not listed)."""
    decided = MergeSuggestion.objects.filter(status=status).exclude(undo={})
    keys = list(
        decided.values_list("customer_id", "decided_at")
        .distinct()
        .order_by("-decided_at", "customer_id")[:limit]
    )
    groups: dict[tuple, list[MergeSuggestion]] = {key: [] for key in keys}
    chosen = decided.filter(
        customer_id__in={key[0] for key in keys}, decided_at__in={key[1] for key in keys}
    )
    for suggestion in chosen.select_related("order", "customer", "decided_by").order_by("pk"):
        key = (suggestion.customer_id, suggestion.decided_at)
        if key in groups:
            groups[key].append(suggestion)
    return list(groups.values())
