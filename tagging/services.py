"""Operations on tags: manual tagging, rules, retagging (full and incremental)."""

import time
from dataclasses import dataclass, field
from datetime import datetime

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from tagging.evaluation import (
    RetagResult,
    evaluate,
    matching,
    resolve_ids,
    rule_order,
    today_in_shanghai,
)
from tagging.models import (
    CustomerTag,
    CustomerTagEvent,
    RetagPending,
    Tag,
    TagGroup,
    TagMergeMove,
    TagRule,
)
from tagging.rules import Compiled, RuleError, compile_condition

RETAG_BATCH = 20_000
DEBOUNCE_SECONDS = 5
_RETAG_SCHEDULED = "tagging:retag-scheduled"
PUSH_SCHEDULED = "tagging:push-scheduled"
FULL_SCHEDULED = "tagging:full-scheduled"
PREVIEW_SAMPLE = 20


# -- marking customers for an incremental retag ----------------------------------------


def customers_mark_for_retag(customer_ids: list[int]) -> None:
    """Queue customers for the incremental retag, in the caller's transaction (the facts
    listener: called where contacts refreshed their facts)."""
    if not customer_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tagging_retagpending (customer_id, marked_at)"
            " SELECT unnest(%s::bigint[]), now() ON CONFLICT DO NOTHING",
            [sorted(set(customer_ids))],
        )
    transaction.on_commit(schedule_retag)


def schedule_retag() -> None:
    """One incremental retag a few seconds from now, unless one is already waiting."""
    from tagging.tasks import retag_pending

    if cache.add(_RETAG_SCHEDULED, 1, timeout=DEBOUNCE_SECONDS + 60):
        retag_pending.apply_async(countdown=DEBOUNCE_SECONDS)


def schedule_push() -> None:
    from tagging.tasks import push_tags

    if cache.add(PUSH_SCHEDULED, 1, timeout=DEBOUNCE_SECONDS + 60):
        push_tags.apply_async(countdown=DEBOUNCE_SECONDS)


@dataclass
class RetagSummary:
    """What a retag did, per tag: {tag_id: (added, removed, total)}."""

    customers: int | None
    tags: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    seconds: float = 0.0
    errors: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        names = {
            tag.pk: str(tag) for tag in Tag.objects.filter(pk__in=self.tags).select_related("group")
        }
        return {
            "customers": self.customers,
            "tags": [
                {
                    "tag": names.get(tag_id, str(tag_id)),
                    "id": tag_id,
                    "added": added,
                    "removed": removed,
                    "total": total,
                }
                for tag_id, (added, removed, total) in sorted(self.tags.items())
            ],
            "added": sum(added for added, _, _ in self.tags.values()),
            "removed": sum(removed for _, removed, _ in self.tags.values()),
            "errors": {str(rule): reason for rule, reason in self.errors.items()},
            "seconds": round(self.seconds, 3),
        }


def _summary(results: list[RetagResult], customers: int | None, seconds: float) -> RetagSummary:
    summary = RetagSummary(customers=customers, seconds=seconds)
    added, removed = {}, {}
    for result in results:
        for tag_id, count in result.added.items():
            added[tag_id] = added.get(tag_id, 0) + count
        for tag_id, count in result.removed.items():
            removed[tag_id] = removed.get(tag_id, 0) + count
        summary.errors.update(result.errors)
    totals = _totals()
    for tag_id, total in totals.items():
        summary.tags[tag_id] = (added.get(tag_id, 0), removed.get(tag_id, 0), total)
    for tag_id in set(added) | set(removed):
        summary.tags.setdefault(tag_id, (added.get(tag_id, 0), removed.get(tag_id, 0), 0))
    return summary


def _totals() -> dict[int, int]:
    """Customers per tag that evaluation keeps: rule, system and mirrored WeCom tags."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.id, count(ct.customer_id) FROM tagging_tag t"
            " LEFT JOIN tagging_customertag ct ON ct.tag_id = t.id"
            " WHERE t.source <> 'manual' GROUP BY t.id"
        )
        return dict(cursor.fetchall())


def retag_full(*, now: datetime | None = None) -> RetagSummary:
    """Every rule and system segment over every customer, after refreshing the facts of
    customers still pending (so the full run sees every change made so far)."""
    from contacts.facts import facts_refresh_pending

    started = time.monotonic()
    facts_refresh_pending()
    RetagPending.objects.all().delete()  # the full run covers them
    result = evaluate(customer_ids=None, now=now)
    transaction.on_commit(schedule_push)
    return _summary([result], None, time.monotonic() - started)


def retag_pending(*, now: datetime | None = None, batch: int = RETAG_BATCH) -> RetagSummary:
    """Re-evaluate the customers queued for it, a batch per transaction; a batch is
    claimed in the transaction that evaluates it, so a killed worker loses nothing."""
    cache.delete(_RETAG_SCHEDULED)
    started = time.monotonic()
    results, customers = [], 0
    while True:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    """
                    DELETE FROM tagging_retagpending WHERE customer_id IN (
                        SELECT customer_id FROM tagging_retagpending
                        ORDER BY customer_id LIMIT %s FOR UPDATE SKIP LOCKED)
                    RETURNING customer_id
                    """,
                    [batch],
                )
                ids = [row[0] for row in cursor.fetchall()]
            if not ids:
                break
            results.append(evaluate(customer_ids=ids, now=now))
            customers += len(ids)
    if customers:
        schedule_push()
    return _summary(results, customers, time.monotonic() - started)


# -- rules -------------------------------------------------------------------------------


def rule_compile(condition) -> Compiled:
    """Validate a condition (RuleError with the reason when it cannot be evaluated)."""
    if not isinstance(condition, dict):
        raise RuleError("规则条件应是一个 JSON 对象")
    return compile_condition(condition, resolve=resolve_ids)


@dataclass
class Preview:
    audience: int
    sample: list[dict]


def rule_preview(*, condition, now: datetime | None = None) -> Preview:
    """How many customers a condition matches now, and a sample of them (nothing saved)."""
    compiled = rule_compile(condition)
    audience, sample = matching(compiled, today=today_in_shanghai(now), limit=PREVIEW_SAMPLE)
    return Preview(audience=audience, sample=sample)


def rule_save(
    *, tag: Tag | None, group: TagGroup, name: str, color: str, condition, is_active: bool, by
) -> TagRule:
    """Create or change a rule tag; refused (RuleError) when the condition is invalid or
    would make rules depend on each other in a cycle. Its tag is re-evaluated soon after."""
    rule_compile(condition)
    if group.system_key:
        # A system group's tags are exactly what its segment computes: anything else put
        # there would lose its customers at the next evaluation.
        raise RuleError(f"「{group.name}」是系统标签组，规则标签请放在其他标签组")
    with transaction.atomic():
        if tag is None:
            tag = Tag.objects.create(group=group, name=name, color=color, source=Tag.Source.RULE)
            rule = TagRule(tag=tag)
        else:
            if tag.source != Tag.Source.RULE:
                raise RuleError("只有规则标签才有规则")
            tag.group, tag.name, tag.color = group, name, color
            tag.save(update_fields=["group", "name", "color"])
            rule = tag.rule
        rule.condition, rule.is_active, rule.updated_by = condition, is_active, by
        rule.save()
        rule_order(list(TagRule.objects.filter(is_active=True).select_related("tag")))
        transaction.on_commit(schedule_full_retag)
    return rule


def schedule_full_retag() -> None:
    """One full retag a few seconds from now (after a rule or a threshold changed), unless
    one is already waiting: saving eight rules in a row costs one run."""
    from tagging.tasks import retag_full_task

    if cache.add(FULL_SCHEDULED, 1, timeout=DEBOUNCE_SECONDS + 60):
        retag_full_task.apply_async(countdown=DEBOUNCE_SECONDS)


# -- manual tags ---------------------------------------------------------------------------


def manual_tag_check(tag: Tag) -> None:
    """Only a manual tag is changed by hand: ValueError naming who maintains any other."""
    if tag.source != Tag.Source.MANUAL or tag.group.system_key:
        raise ValueError(
            _("「%(tag)s」由%(source)s维护，不能手动修改。")
            % {"tag": tag.label, "source": tag.get_source_display()}
        )


def customer_tags_set(
    *, tag: Tag, customer_ids: list[int], add: bool, by, at: datetime | None = None
) -> int:
    """Add (or remove) a manual tag on customers, with history dated `at` (now by
    default); returns how many changed."""
    manual_tag_check(tag)
    now = at or timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        if add:
            cursor.execute(
                """
                WITH changed AS (
                    INSERT INTO tagging_customertag (customer_id, tag_id, added_at)
                    SELECT c.id, %(tag)s, %(now)s FROM contacts_customer c
                    WHERE c.id = ANY(%(ids)s) AND c.merged_into_id IS NULL
                    ON CONFLICT DO NOTHING RETURNING customer_id)
                INSERT INTO tagging_customertagevent (customer_id, tag_id, action, cause, by_id, at)
                SELECT customer_id, %(tag)s, 'added', 'manual', %(by)s, %(now)s FROM changed
                RETURNING customer_id
                """,
                {"tag": tag.pk, "ids": customer_ids, "now": now, "by": getattr(by, "pk", None)},
            )
        else:
            cursor.execute(
                """
                WITH changed AS (
                    DELETE FROM tagging_customertag
                    WHERE tag_id = %(tag)s AND customer_id = ANY(%(ids)s) RETURNING customer_id)
                INSERT INTO tagging_customertagevent (customer_id, tag_id, action, cause, by_id, at)
                SELECT customer_id, %(tag)s, 'removed', 'manual', %(by)s, %(now)s FROM changed
                RETURNING customer_id
                """,
                {"tag": tag.pk, "ids": customer_ids, "now": now, "by": getattr(by, "pk", None)},
            )
        changed = [row[0] for row in cursor.fetchall()]
        # Rules may read this tag (has / lacks).
        customers_mark_for_retag(changed)
    return len(changed)


# -- customer merges (contacts calls these through its merge listener registry) ----------


class MergeTags:
    """Manual tags follow a merged customer and come back when the merge is undone; rule
    and system tags are recomputed from the merged facts."""

    def merged(self, merge) -> None:
        kept_tags = set(
            CustomerTag.objects.filter(customer_id=merge.kept_id).values_list("tag_id", flat=True)
        )
        manual = CustomerTag.objects.filter(
            customer_id=merge.absorbed_id, tag__source=Tag.Source.MANUAL
        )
        moving = [a for a in manual if a.tag_id not in kept_tags]
        dropped = [a for a in manual if a.tag_id in kept_tags]
        TagMergeMove.objects.create(
            merge=merge,
            assignment_ids=[a.pk for a in moving],
            dropped=[[a.tag_id, a.added_at.isoformat()] for a in dropped],
        )
        CustomerTag.objects.filter(pk__in=[a.pk for a in moving]).update(customer_id=merge.kept_id)
        CustomerTag.objects.filter(pk__in=[a.pk for a in dropped]).delete()
        now = timezone.now()
        CustomerTagEvent.objects.bulk_create(
            [
                CustomerTagEvent(
                    customer_id=merge.kept_id,
                    tag_id=a.tag_id,
                    action="added",
                    cause="merge",
                    by=merge.merged_by,
                    at=now,
                )
                for a in moving
            ]
        )

    def undone(self, merge) -> None:
        move = TagMergeMove.objects.filter(merge=merge).first()
        if move is None:
            return
        CustomerTag.objects.filter(pk__in=move.assignment_ids).update(customer_id=merge.absorbed_id)
        CustomerTag.objects.bulk_create(
            [
                CustomerTag(
                    customer_id=merge.absorbed_id,
                    tag_id=tag_id,
                    added_at=datetime.fromisoformat(added_at),
                )
                for tag_id, added_at in move.dropped
            ],
            ignore_conflicts=True,
        )
        now = timezone.now()
        CustomerTagEvent.objects.bulk_create(
            [
                CustomerTagEvent(
                    customer_id=merge.kept_id,
                    tag_id=a.tag_id,
                    action="removed",
                    cause="merge",
                    by=merge.undone_by,
                    at=now,
                )
                for a in CustomerTag.objects.filter(pk__in=move.assignment_ids)
            ]
        )
        move.delete()
