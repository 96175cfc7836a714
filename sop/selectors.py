"""Reads for the SOP console and API: what each plan (and each of its steps) achieved,
touchpoints filtered for the suppressed/stopped log, the sample customer of a script
preview."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Case, CharField, Count, Exists, F, OuterRef, Q, Value, When
from django.utils import timezone

from contacts.models import Customer, Guide, Order, Relationship
from sop.models import Enrollment, SopPlan, SopStep, Touchpoint

PURCHASE_WINDOW = timedelta(days=7)
PURCHASED = [Order.Status.PAID, Order.Status.PARTIALLY_REFUNDED]
# Reasons are kept only for these statuses: a skipped touch's reason is the guide's free
# text, which would make one group per sentence.
REASONED = [Touchpoint.Status.SUPPRESSED, Touchpoint.Status.STOPPED]


@dataclass
class TouchStats:
    """What happened to the touchpoints of a plan or a step. `enrolled` is the number of
    enrollments for a plan, the number of touchpoints for a step (one per enrollment)."""

    enrolled: int = 0
    stopped_enrollments: int = 0
    planned: int = 0
    due: int = 0  # planned and already due: the next dispatch gives or holds them back
    tasks: int = 0
    done: int = 0
    done_on_time: int = 0  # done before the send window ended
    skipped: int = 0
    expired: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)  # reason → count
    stopped: dict[str, int] = field(default_factory=dict)  # reason → count
    purchased_7d: int = 0  # distinct customers who paid within 7 days after a done touch

    @property
    def suppressed_total(self) -> int:
        return sum(self.suppressed.values())

    @property
    def stopped_total(self) -> int:
        return sum(self.stopped.values())

    def as_dict(self) -> dict:
        return {
            "enrolled": self.enrolled,
            "stopped_enrollments": self.stopped_enrollments,
            "planned": self.planned,
            "due": self.due,
            "tasks": self.tasks,
            "done": self.done,
            "done_on_time": self.done_on_time,
            "skipped": self.skipped,
            "expired": self.expired,
            "suppressed": self.suppressed_total,
            "suppressed_by_reason": dict(sorted(self.suppressed.items())),
            "stopped": self.stopped_total,
            "stopped_by_reason": dict(sorted(self.stopped.items())),
            "purchased_7d": self.purchased_7d,
        }


def _touch_counts(touchpoints, key: str, now: datetime) -> dict[int, TouchStats]:
    """One GROUP BY (key, status, reason) over the touchpoints with FILTER clauses: the
    counts, the due and on-time subsets, and the buyers. Reads the (plan, status) index
    for a plan's rows; the buyers' EXISTS probes orders by (customer, paid_at) for done
    rows only. Cost: one pass over the touchpoints asked for."""
    bought = Order.objects.filter(
        customer_id=OuterRef("customer_id"),
        status__in=PURCHASED,
        paid_at__gte=OuterRef("done_at"),
        paid_at__lte=OuterRef("done_at") + PURCHASE_WINDOW,
    )
    rows = (
        touchpoints.order_by()
        .annotate(
            bucket=Case(
                When(status__in=REASONED, then=F("reason")),
                default=Value(""),
                output_field=CharField(),
            )
        )
        .values(key, "status", "bucket")
        .annotate(
            n=Count("id"),
            due=Count("id", filter=Q(status=Touchpoint.Status.PLANNED, due_at__lte=now)),
            on_time=Count(
                "id",
                filter=Q(status=Touchpoint.Status.DONE, done_at__lte=F("window_ends_at")),
            ),
            buyers=Count(
                "customer_id",
                distinct=True,
                filter=Q(Exists(bought), status=Touchpoint.Status.DONE),
            ),
        )
    )
    stats: dict[int, TouchStats] = {}
    for row in rows:
        entry = stats.setdefault(row[key], TouchStats())
        status, n = row["status"], row["n"]
        if status == Touchpoint.Status.SUPPRESSED:
            entry.suppressed[row["bucket"]] = entry.suppressed.get(row["bucket"], 0) + n
        elif status == Touchpoint.Status.STOPPED:
            entry.stopped[row["bucket"]] = entry.stopped.get(row["bucket"], 0) + n
        else:
            name = {"task": "tasks"}.get(status, status)
            setattr(entry, name, getattr(entry, name) + n)
        entry.due += row["due"]
        entry.done_on_time += row["on_time"]
        # Done rows form one group per key, so the distinct count is exact.
        entry.purchased_7d += row["buyers"]
    return stats


def plan_stats(plan_ids: Iterable[int], *, now: datetime | None = None) -> dict[int, TouchStats]:
    """The list's numbers for these plans: two aggregate queries, whatever their size."""
    plan_ids = list(plan_ids)
    if not plan_ids:
        return {}
    # Through the steps: the step index reads a plan's touchpoints (there is no plan index).
    stats = _touch_counts(
        Touchpoint.objects.filter(step__plan_id__in=plan_ids), "plan_id", now or timezone.now()
    )
    enrolled = (
        Enrollment.objects.filter(plan_id__in=plan_ids)
        .order_by()
        .values("plan_id")
        .annotate(n=Count("id"), stopped=Count("id", filter=Q(status=Enrollment.Status.STOPPED)))
    )
    for row in enrolled:
        entry = stats.setdefault(row["plan_id"], TouchStats())
        entry.enrolled, entry.stopped_enrollments = row["n"], row["stopped"]
    return {pk: stats.get(pk, TouchStats()) for pk in plan_ids}


def step_stats(plan: SopPlan, *, now: datetime | None = None) -> dict[int, TouchStats]:
    """The same numbers by step of one plan (step id → stats): one aggregate query."""
    stats = _touch_counts(
        Touchpoint.objects.filter(step__plan=plan), "step_id", now or timezone.now()
    )
    for entry in stats.values():
        entry.enrolled = (
            entry.planned
            + entry.tasks
            + entry.done
            + entry.skipped
            + entry.expired
            + entry.suppressed_total
            + entry.stopped_total
        )
    return stats


def plans_listed():
    """Plans in the order the dispatch ranks them, with their number of (live) steps."""
    return SopPlan.objects.annotate(
        steps_count=Count("steps", filter=Q(steps__is_retired=False))
    ).order_by("-priority", "pk")


def plan_steps(plan: SopPlan, *, retired: bool = False):
    """The plan's live steps in order; with `retired`, then the removed ones (which keep
    the numbers of their touchpoints)."""
    steps = SopStep.objects.filter(plan=plan)
    if not retired:
        return steps.filter(is_retired=False).order_by("position")
    return steps.order_by("is_retired", "position", "pk")


def recent_enrollments(plan: SopPlan, *, limit: int = 50):
    return (
        Enrollment.objects.filter(plan=plan)
        .select_related("customer", "guide")
        .order_by("-created_at", "-id")[:limit]
    )


# -- the suppressed / stopped log ----------------------------------------------------------


@dataclass(frozen=True)
class TouchFilter:
    statuses: tuple[str, ...] = (Touchpoint.Status.SUPPRESSED, Touchpoint.Status.STOPPED)
    reason: str = ""
    plan_id: int | None = None
    guide_id: int | None = None
    customer_id: int | None = None


def touchpoints_filtered(filters: TouchFilter):
    """Touchpoints newest first (by id: keyset paging on the primary key)."""
    queryset = Touchpoint.objects.all()
    if filters.statuses:
        queryset = queryset.filter(status__in=filters.statuses)
    if filters.reason:
        queryset = queryset.filter(reason=filters.reason)
    if filters.plan_id is not None:
        queryset = queryset.filter(step__plan_id=filters.plan_id)
    if filters.guide_id is not None:
        queryset = queryset.filter(guide_id=filters.guide_id)
    if filters.customer_id is not None:
        queryset = queryset.filter(customer_id=filters.customer_id)
    return queryset.order_by("-id")


def touchpoint_rows(filters: TouchFilter):
    """The log's rows for the CSV export: plain tuples, streamed from the database."""
    return (
        touchpoints_filtered(filters)
        .values_list(
            "id",
            "plan__name",
            "step__position",
            "customer_id",
            "customer__name",
            "guide__name",
            "status",
            "reason",
            "due_at",
            "window_ends_at",
        )
        .iterator(chunk_size=2000)
    )


# -- the script preview's sample customer ----------------------------------------------------


def acting_guide(customer: Customer) -> Guide | None:
    """The guide who would act for the customer: the most recently added live
    relationship (as sop.scheduling.LATEST_GUIDE)."""
    relationship = (
        Relationship.objects.filter(customer=customer, is_active=True)
        .select_related("guide__store")
        .order_by("-added_at", "-id")
        .first()
    )
    return relationship.guide if relationship else None


def first_followed(customer_ids: Iterable[int] | None = None) -> Customer | None:
    """The first customer (by id) with a live relationship, among these ids or all."""
    queryset = Customer.objects.filter(
        Exists(Relationship.objects.filter(customer=OuterRef("pk"), is_active=True)),
        merged_into__isnull=True,
    )
    if customer_ids is not None:
        queryset = queryset.filter(pk__in=list(customer_ids))
    return queryset.order_by("pk").first()
