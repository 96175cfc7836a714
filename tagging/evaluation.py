"""Evaluating tags, set-based: every rule and system segment over all customers (full)
or over the customers whose facts or tags changed (incremental), in SQL.

For each source of tags (WeCom's corp tags, the system segments, then the rules
in the order their `tag` conditions need) one query gives the (customer, tag)
pairs that should hold; two statements apply the difference to
`CustomerTag`, writing a `CustomerTagEvent` for every tag added or removed and
queueing the customers whose pushed tags changed for WeCom (`TagPushPending`).
Nothing is rewritten that did not change. A PostgreSQL advisory lock keeps a
full run and incremental runs from interleaving.

Incremental equals full for the same data and day (tested with random changes):
a scoped run evaluates exactly the same queries restricted to its customers;
the population-relative RFM groups are evaluated over everyone every time.
"""

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.utils import timezone

from tagging.models import CustomerTagEvent, Tag, TagGroup, TagRule
from tagging.rules import Compiled, RuleError, compile_condition
from tagging.system import SEGMENTS, Segment, current_settings, rfm_window_create

SHANGHAI = ZoneInfo("Asia/Shanghai")
LOCK_KEY = 7_310_001  # pg_advisory_xact_lock: one evaluation at a time
PUSH_GROUP_NAME = "SCRM自动标签"  # the corp tag group rule and system tags are pushed to


@dataclass
class RetagResult:
    customers: int | None  # customers in scope; None for a full run
    added: Counter = field(default_factory=Counter)  # tag id → count
    removed: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    errors: dict[int, str] = field(default_factory=dict)  # rule id → why it was skipped


def today_in_shanghai(now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(SHANGHAI).date()


def evaluate(*, customer_ids: list[int] | None, now: datetime | None = None) -> RetagResult:
    """Bring every customer's computed tags up to date (all customers when ids is None).
    Runs in one transaction."""
    now = now or timezone.now()
    started = time.monotonic()
    result = RetagResult(customers=None if customer_ids is None else len(set(customer_ids)))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        scoped = customer_ids is not None
        if scoped:
            cursor.execute(
                "DROP TABLE IF EXISTS retag_scope;"
                " CREATE TEMP TABLE retag_scope (id bigint PRIMARY KEY) ON COMMIT DROP;"
                " INSERT INTO retag_scope SELECT DISTINCT unnest(%s::bigint[]);"
                " DROP TABLE IF EXISTS retag_widened;"
                " CREATE TEMP TABLE retag_widened (id bigint PRIMARY KEY) ON COMMIT DROP;"
                " ANALYZE retag_scope",
                [customer_ids],
            )
        context = _Context(cursor=cursor, now=now, today=today_in_shanghai(now), scoped=scoped)
        _wecom_mirror(context, result)
        settings = current_settings()
        rfm_window_create(cursor, settings, context.today)
        for segment in SEGMENTS:
            _segment(context, result, segment, settings)
        if not scoped:
            # Rules reading tags (has / lacks) look assignments up per customer: give the
            # planner the statistics of the assignments just written.
            cursor.execute("ANALYZE tagging_customertag")
        _rules(context, result)
    result.seconds = time.monotonic() - started
    return result


@dataclass
class _Context:
    cursor: object
    now: datetime
    today: date
    scoped: bool
    # In an incremental run: tags whose holders may have changed outside the scope (the
    # population-wide RFM groups, and rules reading them); their changed holders are in
    # retag_widened, and rules reading these tags evaluate them too.
    widened_tags: set[int] = field(default_factory=set)

    def scope(self, column: str, widened: bool = False) -> str:
        if not self.scoped:
            return "true"
        if widened:
            return (
                f"({column} IN (SELECT id FROM retag_scope)"
                f" OR {column} IN (SELECT id FROM retag_widened))"
            )
        return f"{column} IN (SELECT id FROM retag_scope)"


def _apply(
    context: _Context,
    result: RetagResult,
    *,
    target_sql: str,
    params: dict,
    tag_ids: list[int],
    cause: str,
    pushed: bool,
    scoped: bool,
    widened: bool = False,
) -> None:
    """Make the assignments of `tag_ids` equal the (customer_id, tag_id) rows of target_sql
    (within the scope when `scoped`), with history and push queueing."""
    if not tag_ids:
        return
    cursor = context.cursor
    cursor.execute(
        "DROP TABLE IF EXISTS retag_target;"
        f" CREATE TEMP TABLE retag_target ON COMMIT DROP AS {target_sql}",
        {**params, "today": context.today},
    )
    cursor.execute("ANALYZE retag_target")
    where_scope = context.scope("ct.customer_id", widened) if scoped else "true"
    common = {"tags": tag_ids, "cause": cause, "now": context.now, "pushed": pushed}
    # Changes that may fall outside the scope (a population-wide group in an incremental
    # run, or a rule reading one) are remembered for the rules that read these tags.
    widen = (
        ", widened AS (INSERT INTO retag_widened SELECT DISTINCT customer_id FROM {changes}"
        " ON CONFLICT DO NOTHING)"
        if context.scoped and (widened or not scoped)
        else ""
    )
    # A customer already queued is queued again (DO UPDATE, not DO NOTHING): a push
    # holding their row may have read their tags before this change, and deletes the
    # row when done; the update waits for it and then queues the customer anew.
    cursor.execute(
        f"""
        WITH removed AS (
            DELETE FROM tagging_customertag ct
            WHERE ct.tag_id = ANY(%(tags)s) AND {where_scope}
              AND NOT EXISTS (SELECT 1 FROM retag_target t
                              WHERE t.customer_id = ct.customer_id AND t.tag_id = ct.tag_id)
            RETURNING ct.customer_id, ct.tag_id
        ), events AS (
            INSERT INTO tagging_customertagevent (customer_id, tag_id, action, cause, at)
            SELECT customer_id, tag_id, 'removed', %(cause)s, %(now)s FROM removed
        ), push AS (
            INSERT INTO tagging_tagpushpending (customer_id, marked_at, attempts, last_error)
            SELECT DISTINCT customer_id, %(now)s, 0, '' FROM removed WHERE %(pushed)s
            ON CONFLICT (customer_id) DO UPDATE SET marked_at = EXCLUDED.marked_at,
                attempts = 0, last_error = ''
        ){widen.format(changes="removed")}
        SELECT tag_id, count(*) FROM removed GROUP BY tag_id
        """,
        common,
    )
    for tag_id, count in cursor.fetchall():
        result.removed[tag_id] += count
    cursor.execute(
        f"""
        WITH added AS (
            INSERT INTO tagging_customertag (customer_id, tag_id, added_at)
            SELECT t.customer_id, t.tag_id, %(now)s FROM retag_target t
            -- only what is new: most targets are assigned already, and an anti-join is
            -- far cheaper than a conflicting insert per row
            WHERE NOT EXISTS (SELECT 1 FROM tagging_customertag ct
                              WHERE ct.tag_id = t.tag_id AND ct.customer_id = t.customer_id)
            ON CONFLICT (tag_id, customer_id) DO NOTHING
            RETURNING customer_id, tag_id
        ), events AS (
            INSERT INTO tagging_customertagevent (customer_id, tag_id, action, cause, at)
            SELECT customer_id, tag_id, 'added', %(cause)s, %(now)s FROM added
        ), push AS (
            INSERT INTO tagging_tagpushpending (customer_id, marked_at, attempts, last_error)
            SELECT DISTINCT customer_id, %(now)s, 0, '' FROM added WHERE %(pushed)s
            ON CONFLICT (customer_id) DO UPDATE SET marked_at = EXCLUDED.marked_at,
                attempts = 0, last_error = ''
        ){widen.format(changes="added")}
        SELECT tag_id, count(*) FROM added GROUP BY tag_id
        """,
        common,
    )
    for tag_id, count in cursor.fetchall():
        result.added[tag_id] += count


def _segment(context: _Context, result: RetagResult, segment: Segment, settings: dict) -> None:
    group, _ = TagGroup.objects.get_or_create(
        system_key=segment.key,
        defaults={"name": segment.group, "order": 100 + SEGMENTS.index(segment)},
    )
    scoped = context.scoped and not segment.population
    select = segment.sql(settings).replace(
        "{scope}", context.scope("f.customer_id") if scoped else "true"
    )
    if segment.tags is None:
        # Tags named after the data (材质偏好: 冰丝, 棉, …) are created as values appear.
        context.cursor.execute(
            f"""
            INSERT INTO tagging_tag (group_id, name, color, source, description, wecom_tag_id,
                                     "order", created_at)
            SELECT DISTINCT %(group)s, s.name, '#722ed1', 'system', '', '', 0, %(now)s
            FROM ({select}) s(customer_id, name)
            ON CONFLICT (group_id, name) DO NOTHING
            """,
            {"group": group.pk, "now": context.now, "today": context.today},
        )
    else:
        for order, name in enumerate(segment.tags(settings)):
            Tag.objects.get_or_create(
                group=group,
                name=name,
                defaults={
                    "source": Tag.Source.SYSTEM,
                    "order": order,
                    "color": "#722ed1",
                    "description": segment.description,
                },
            )
    tag_ids = list(group.tags.values_list("pk", flat=True))
    if context.scoped and segment.population:
        context.widened_tags.update(tag_ids)
    _apply(
        context,
        result,
        target_sql=f"""SELECT s.customer_id, t.id AS tag_id FROM ({select}) s(customer_id, name)
                       JOIN tagging_tag t ON t.group_id = %(group)s AND t.name = s.name""",
        params={"group": group.pk},
        tag_ids=tag_ids,
        cause=CustomerTagEvent.Cause.SYSTEM,
        pushed=True,
        scoped=scoped,
    )


def _wecom_mirror(context: _Context, result: RetagResult) -> None:
    """Corp tags set in WeCom (by guides, on a relationship) show as the customer's tags,
    source wecom; tags of our own push group are ours already and are skipped."""
    from contacts.models import CorpTag

    corp_tags = CorpTag.objects.filter(is_deleted=False, group__is_deleted=False).exclude(
        group__name=PUSH_GROUP_NAME
    )
    for corp_tag in corp_tags.select_related("group"):
        group, _ = TagGroup.objects.get_or_create(
            system_key=f"wecom:{corp_tag.group.wecom_group_id}",
            defaults={"name": _free_group_name(corp_tag.group.name), "order": 200},
        )
        Tag.objects.update_or_create(
            source=Tag.Source.WECOM,
            wecom_tag_id=corp_tag.wecom_tag_id,
            defaults={"group": group, "name": corp_tag.name[:30], "color": "#13c2c2"},
        )
    live = set(corp_tags.values_list("wecom_tag_id", flat=True))
    mirrored = Tag.objects.filter(source=Tag.Source.WECOM)
    # A corp tag deleted in WeCom: its mirror loses every customer, then the tag itself.
    _apply(
        context,
        result,
        target_sql=f"""
            SELECT DISTINCT r.customer_id, t.id AS tag_id
            FROM contacts_relationship r CROSS JOIN unnest(r.wecom_tag_ids) w(wecom_tag_id)
            JOIN tagging_tag t ON t.source = 'wecom' AND t.wecom_tag_id = w.wecom_tag_id
            JOIN contacts_customer c ON c.id = r.customer_id AND c.merged_into_id IS NULL
            WHERE r.is_active AND t.wecom_tag_id = ANY(%(live)s)
              AND {context.scope("r.customer_id")}""",
        params={"live": sorted(live)},
        tag_ids=list(mirrored.values_list("pk", flat=True)),
        cause=CustomerTagEvent.Cause.SYNC,
        pushed=False,
        scoped=context.scoped,
    )
    if not context.scoped:
        mirrored.exclude(wecom_tag_id__in=live).delete()


def _free_group_name(name: str) -> str:
    name = name[:30]
    if not TagGroup.objects.filter(name=name).exists():
        return name
    return f"{name[:24]}（企业微信）"


def rule_order(rules: list[TagRule]) -> list[TagRule]:
    """Rules in an order where a rule reading another rule's tag comes after it; raises
    RuleError on a cycle."""
    by_tag = {rule.tag_id: rule for rule in rules}
    needs: dict[int, set[int]] = defaultdict(set)
    for rule in rules:
        compiled = compile_condition(rule.condition, resolve=resolve_ids)
        needs[rule.tag_id] = {tag for tag in compiled.tag_ids if tag in by_tag}
    ordered: list[TagRule] = []
    state: dict[int, str] = {}

    def visit(tag_id: int, path: list[int]) -> None:
        if state.get(tag_id) == "done":
            return
        if state.get(tag_id) == "visiting":  # the cycle: from where the path met it first
            cycle = [*path[path.index(tag_id) :], tag_id]
            names = " → ".join(by_tag[t].tag.name for t in cycle)
            raise RuleError(f"规则之间循环引用：{names}")
        state[tag_id] = "visiting"
        for needed in sorted(needs[tag_id]):
            visit(needed, [*path, tag_id])
        state[tag_id] = "done"
        ordered.append(by_tag[tag_id])

    for rule in sorted(rules, key=lambda r: r.pk):
        visit(rule.tag_id, [])
    return ordered


def _rules(context: _Context, result: RetagResult) -> None:
    rules = list(TagRule.objects.filter(is_active=True).select_related("tag"))
    for rule in rule_order(rules):
        try:
            compiled = compile_condition(rule.condition, resolve=resolve_ids)
        except RuleError as error:
            # A guide or store named by the rule was removed since it was saved.
            result.errors[rule.pk] = str(error)
            continue
        widened = bool(compiled.tag_ids & context.widened_tags)
        if widened:
            context.widened_tags.add(rule.tag_id)
        _apply(
            context,
            result,
            target_sql=f"""SELECT f.customer_id, %(rule_tag)s AS tag_id
                           FROM contacts_customerfacts f
                           WHERE {context.scope("f.customer_id", widened)} AND {compiled.sql}""",
            params={**compiled.params, "rule_tag": rule.tag_id},
            tag_ids=[rule.tag_id],
            cause=CustomerTagEvent.Cause.RULE,
            pushed=True,
            scoped=context.scoped,
            widened=widened,
        )
    context.cursor.execute(
        "SELECT tag_id, count(*) FROM tagging_customertag WHERE tag_id = ANY(%s) GROUP BY tag_id",
        [[rule.tag_id for rule in rules]],
    )
    totals = dict(context.cursor.fetchall())
    for rule in rules:
        rule.audience = totals.get(rule.tag_id, 0)
        rule.evaluated_at = context.now
    TagRule.objects.bulk_update(rules, ["audience", "evaluated_at"])


def resolve_ids(kind: str, values: list) -> list[int]:
    """Guide userids, store codes or tag ids → row ids; RuleError names unknown ones."""
    from contacts.models import Guide, Store

    if kind == "guide":
        found = dict(
            Guide.objects.filter(wecom_userid__in=values).values_list("wecom_userid", "pk")
        )
        label = "导购"
    elif kind == "store":
        found = dict(Store.objects.filter(code__in=values).values_list("code", "pk"))
        label = "门店"
    else:
        found = {pk: pk for pk in Tag.objects.filter(pk__in=values).values_list("pk", flat=True)}
        label = "标签"
    missing = [str(v) for v in values if v not in found]
    if missing:
        raise RuleError(f"找不到{label}：{'、'.join(missing)}")
    return sorted(found[v] for v in values)


def matching(compiled: Compiled, *, today: date, limit: int) -> tuple[int, list[dict]]:
    """How many customers a compiled condition matches, and the first `limit` of them."""
    params = {**compiled.params, "today": today, "limit": limit}
    where = f"FROM contacts_customerfacts f WHERE {compiled.sql}"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) {where}", params)
        (audience,) = cursor.fetchone()
        cursor.execute(
            f"""SELECT c.id, c.name, f.purchase_days, f.net_revenue, f.last_purchase_on
                FROM (SELECT f.customer_id {where} ORDER BY f.customer_id LIMIT %(limit)s) m
                JOIN contacts_customer c ON c.id = m.customer_id
                JOIN contacts_customerfacts f ON f.customer_id = c.id ORDER BY c.id""",
            params,
        )
        sample = [
            {
                "id": pk,
                "name": name,
                "purchase_days": days,
                "net_revenue": str(revenue),
                "last_purchase_on": last.isoformat() if last else None,
            }
            for pk, name, days, revenue, last in cursor.fetchall()
        ]
    return audience, sample
