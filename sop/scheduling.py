"""Enrolment and dispatch, set-based (docs/SOP.md).

`enroll` turns candidate rows (customer, guide, trigger key, trigger time) into
enrollments and their touchpoints in one statement; unique keys make a trigger
that fires twice a no-op. `dispatch` hands due touchpoints to guides as tasks,
a batch of rows claimed with FOR UPDATE SKIP LOCKED per transaction, applying
stop conditions, expiry, quiet hours and the contact policy with a handful of
UPDATEs over the batch. Every statement here runs for a whole batch: the cost
per touchpoint is index lookups, never a Python loop.
"""

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction

from sop.models import ContactPolicy, SopPlan

SHANGHAI = ZoneInfo("Asia/Shanghai")
DISPATCH_BATCH = 10_000
PURCHASED = "o.status IN ('paid', 'partially_refunded') AND o.paid_at IS NOT NULL"

# When a step is due: trigger time plus offset, in Shanghai (no DST), moved into the
# step's send window (its start that day, or the next day's start when already past).
_DUE = """
WITH raw AS (
    SELECT e.id AS enrollment_id, e.customer_id, e.guide_id, s.id AS step_id,
           (e.triggered_at AT TIME ZONE 'Asia/Shanghai')
             + s.offset_days * interval '1 day' + s.offset_hours * interval '1 hour' AS local,
           s.window_start, s.window_end
    FROM enrolled e JOIN sop_sopstep s ON s.plan_id = %(plan)s AND NOT s.is_retired
), placed AS (
    SELECT raw.*, CASE
        WHEN local::time < window_start THEN local::date + window_start
        WHEN local::time > window_end THEN local::date + 1 + window_start
        ELSE local END AS start_local
    FROM raw
)
INSERT INTO sop_touchpoint (enrollment_id, step_id, plan_id, customer_id, guide_id, priority,
                            due_at, window_ends_at, status, reason)
SELECT enrollment_id, step_id, %(plan)s, customer_id, guide_id, %(priority)s,
       start_local AT TIME ZONE 'Asia/Shanghai',
       (start_local::date + window_end) AT TIME ZONE 'Asia/Shanghai', 'planned', ''
FROM placed
ON CONFLICT (enrollment_id, step_id) DO NOTHING
"""

# The guide who acts for a customer: the most recently added live relationship.
LATEST_GUIDE = """(SELECT r.guide_id FROM contacts_relationship r
                   WHERE r.customer_id = {customer} AND r.is_active
                   ORDER BY r.added_at DESC, r.id DESC LIMIT 1)"""


def enroll(*, plan: SopPlan, candidates: str, params: dict) -> int:
    """Enrol the rows of `candidates` (SQL giving customer_id, guide_id, trigger_key,
    triggered_at) that pass the plan's audience; returns the number of new enrollments.
    Rows without a guide are skipped (nobody could act on them)."""
    from tagging.evaluation import resolve_ids
    from tagging.rules import compile_condition

    audience, audience_params = "true", {}
    if plan.audience:
        compiled = compile_condition(plan.audience, resolve=resolve_ids)
        audience, audience_params = compiled.sql, compiled.params
    from contacts.facts import facts_refresh

    with transaction.atomic(), connection.cursor() as cursor:
        # A contact added a moment ago has no facts yet (their refresh is queued): the
        # audience is judged on fresh facts, so make them now.
        cursor.execute(
            f"""SELECT DISTINCT c.customer_id FROM ({candidates}) c
                LEFT JOIN contacts_customerfacts f ON f.customer_id = c.customer_id
                WHERE f.customer_id IS NULL""",
            {"today": _today(), **params},
        )
        missing = [row[0] for row in cursor.fetchall()]
        if missing:
            facts_refresh(customer_ids=missing)
        cursor.execute(
            f"""
            DROP TABLE IF EXISTS enrolled;
            CREATE TEMP TABLE enrolled ON COMMIT DROP AS
            WITH c AS ({candidates}), inserted AS (
                INSERT INTO sop_enrollment (plan_id, customer_id, guide_id, trigger_key,
                                            triggered_at, status, stopped_reason, created_at)
                SELECT DISTINCT ON (c.customer_id, c.trigger_key) %(plan)s, c.customer_id,
                       c.guide_id, c.trigger_key, c.triggered_at, 'active', '', now()
                FROM c JOIN contacts_customerfacts f ON f.customer_id = c.customer_id
                WHERE c.guide_id IS NOT NULL AND ({audience})
                ORDER BY c.customer_id, c.trigger_key, c.triggered_at
                ON CONFLICT (plan_id, customer_id, trigger_key) DO NOTHING
                RETURNING id, customer_id, guide_id, triggered_at
            )
            SELECT * FROM inserted
            """,
            {"today": _today(), **params, **audience_params, "plan": plan.pk},
        )
        enrolled = cursor.rowcount
        if enrolled:
            cursor.execute(_DUE, {"plan": plan.pk, "priority": plan.priority})
    return enrolled


def _today(now: datetime | None = None) -> date:
    return (now or datetime.now(tz=SHANGHAI)).astimezone(SHANGHAI).date()


def local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)


@dataclass
class DispatchResult:
    created: int = 0
    deferred: int = 0  # quiet hours: moved to their end
    expired: int = 0
    suppressed: Counter = field(default_factory=Counter)  # reason → count
    stopped: Counter = field(default_factory=Counter)
    automatic: list[int] = field(default_factory=list)  # touchpoints queued for sending
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "created": self.created,
            "suppressed": dict(self.suppressed),
            "stopped": dict(self.stopped),
            "expired": self.expired,
            "deferred": self.deferred,
            "automatic": len(self.automatic),
            "seconds": round(self.seconds, 3),
        }


def in_quiet_hours(policy: ContactPolicy, now: datetime) -> datetime | None:
    """The end of the quiet hours `now` falls in (as an aware time), or None."""
    local = now.astimezone(SHANGHAI)
    start, end, clock = policy.quiet_start, policy.quiet_end, local.time()
    if start == end:
        return None
    if start < end:
        inside = start <= clock < end
        ends_on = local.date()
    else:  # across midnight, e.g. 21:30–09:00
        inside = clock >= start or clock < end
        ends_on = local.date() + timedelta(days=1) if clock >= start else local.date()
    if not inside:
        return None
    return datetime.combine(ends_on, end, tzinfo=SHANGHAI)


# A plan's tag stop conditions on a touchpoint (alias `touch`), its plan `p` and its
# enrolment `e`: for touches not yet given (the dispatch) and tasks given alike.
TAG_STOPS = """WHEN p.stop_on_tag_added_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM tagging_customertag ct WHERE ct.customer_id = {touch}.customer_id
          AND ct.tag_id = p.stop_on_tag_added_id AND ct.added_at > e.triggered_at)
        THEN 'tag_added'
    WHEN p.stop_on_tag_removed_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM tagging_customertag ct WHERE ct.customer_id = {touch}.customer_id
          AND ct.tag_id = p.stop_on_tag_removed_id) THEN 'tag_removed'"""


def next_quiet_start(policy: ContactPolicy, now: datetime) -> datetime | None:
    """When the next quiet hours begin after `now` (as an aware time), or None when the
    policy has none."""
    if policy.quiet_start == policy.quiet_end:
        return None
    local = now.astimezone(SHANGHAI)
    start = datetime.combine(local.date(), policy.quiet_start, tzinfo=SHANGHAI)
    return start if start > local else start + timedelta(days=1)


def dispatch(*, now: datetime, batch: int | None = None) -> DispatchResult:
    """Turn every touchpoint due by `now` into a task (or record why not), `batch` rows
    per transaction (default: the SOP_DISPATCH_BATCH setting)."""
    batch = batch or getattr(settings, "SOP_DISPATCH_BATCH", DISPATCH_BATCH)
    started = time.monotonic()
    result = DispatchResult()
    policy = ContactPolicy.current()
    while _dispatch_batch(now=now, policy=policy, batch=batch, result=result):
        pass
    with transaction.atomic(), connection.cursor() as cursor:
        # Open tasks whose window has ended: expired (counted, shown to the guide as such).
        cursor.execute(
            "UPDATE sop_touchpoint SET status = 'expired'"
            " WHERE status = 'task' AND window_ends_at < %s",
            [now],
        )
        result.expired += cursor.rowcount
        # Open tasks of plans that stop on a tag: stopped once the tag says so, as the
        # touches not yet given are (a purchase stops them as it comes in, through the
        # facts listener), with their enrolments.
        cursor.execute(
            f"""
            WITH due AS (
                SELECT t.id, t.enrollment_id, CASE
                    {TAG_STOPS.format(touch="t")}
                    END AS reason
                FROM sop_touchpoint t
                JOIN sop_sopplan p ON p.id = t.plan_id
                JOIN sop_enrollment e ON e.id = t.enrollment_id
                WHERE t.status = 'task'
                  AND (p.stop_on_tag_added_id IS NOT NULL OR p.stop_on_tag_removed_id IS NOT NULL)
            ), stopped AS (
                UPDATE sop_touchpoint t SET status = 'stopped', reason = d.reason
                FROM due d WHERE t.id = d.id AND d.reason IS NOT NULL
                RETURNING t.enrollment_id, d.reason
            ), enrollments AS (
                UPDATE sop_enrollment e SET status = 'stopped', stopped_reason = s.reason,
                       stopped_at = %(now)s
                FROM stopped s WHERE e.id = s.enrollment_id AND e.status = 'active'
            )
            SELECT reason, count(*) FROM stopped GROUP BY reason
            """,  # noqa: S608 - fixed SQL fragments
            {"now": now},
        )
        for reason, count in cursor.fetchall():
            result.stopped[reason] += count
    result.seconds = time.monotonic() - started
    return result


# The batch's rows, claimed with what the decisions read, and each one's outcome (NULL:
# none so far; still none at the end: a task). Decisions are made in this temporary
# table; sop_touchpoint is written once per row, by the batch's last statement.
_CLAIMED = """
DROP TABLE IF EXISTS claimed;
CREATE TEMP TABLE claimed (
    id bigint PRIMARY KEY, enrollment_id bigint NOT NULL, step_id bigint NOT NULL,
    plan_id bigint NOT NULL, customer_id bigint NOT NULL, guide_id bigint NOT NULL,
    priority integer NOT NULL, due_at timestamptz NOT NULL,
    window_ends_at timestamptz NOT NULL, outcome text, reason text
) ON COMMIT DROP
"""


def _dispatch_batch(*, now: datetime, policy: ContactPolicy, batch: int, result) -> bool:
    today = _today(now)
    week_start = today - timedelta(days=today.weekday())
    with transaction.atomic(), connection.cursor() as cursor:
        # Every statement below reads a batch's rows of large tables by key; compiling
        # them (JIT, on for their estimated cost) takes longer than running them.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(_CLAIMED)
        cursor.execute(
            """
            INSERT INTO claimed
            SELECT id, enrollment_id, step_id, plan_id, customer_id, guide_id, priority,
                   due_at, window_ends_at, NULL, NULL
            FROM sop_touchpoint
            WHERE status = 'planned' AND due_at <= %s
            ORDER BY due_at, id LIMIT %s FOR UPDATE SKIP LOCKED
            """,
            [now, batch],
        )
        if cursor.rowcount == 0:
            return False
        claimed = cursor.rowcount
        cursor.execute("ANALYZE claimed (id, customer_id)")  # the row count and customers
        params = {
            "now": now,
            "day_start": local_midnight(today),
            "week_start": local_midnight(week_start),
            "complaint_tag": policy.complaint_tag_id,
            "complaint_since": now - timedelta(days=policy.complaint_days),
            "max_day": policy.max_per_day,
            "max_week": policy.max_per_week,
            "until": None,
            # a task given now ends before the quiet hours do begin: no guide messages a
            # customer in them, however late the step's window runs
            "quiet_from": next_quiet_start(policy, now),
        }
        # 1. Stop conditions, first match wins (the enrolment stops with its touchpoint,
        # below, unless only the plan is paused or the step removed, or the contact was
        # deleted and the plan goes on then). A touch for a customer the guide no longer
        # follows always stops: the guide could not see the task; after the plan's own
        # conditions, so that a purchase or a tag still stops the enrolment. The enrolment is
        # read by key for each row (OFFSET 0 keeps it a lookup, not a scan of every
        # enrolment).
        cursor.execute(
            f"""
            UPDATE claimed c SET outcome = 'stopped', reason = r.reason FROM (
                SELECT c.id, CASE
                    WHEN e.status = 'stopped' THEN e.stopped_reason
                    WHEN s.is_retired THEN 'step_removed'
                    WHEN EXISTS (SELECT 1 FROM sop_optout x WHERE x.customer_id = c.customer_id)
                        THEN 'opted_out'
                    WHEN p.stop_on_purchase AND EXISTS (
                        SELECT 1 FROM contacts_order o WHERE o.customer_id = c.customer_id
                          AND {PURCHASED} AND o.paid_at > e.triggered_at
                          AND o.paid_at <= %(now)s) THEN 'purchased'
                    {TAG_STOPS.format(touch="c")}
                    WHEN NOT EXISTS (
                        SELECT 1 FROM contacts_relationship r WHERE r.customer_id = c.customer_id
                          AND r.guide_id = c.guide_id AND r.is_active) THEN 'contact_deleted'
                    WHEN NOT p.is_active THEN 'plan_paused'
                    END AS reason
                FROM claimed c
                CROSS JOIN LATERAL (
                    SELECT e.status, e.stopped_reason, e.triggered_at FROM sop_enrollment e
                    WHERE e.id = c.enrollment_id OFFSET 0) e
                JOIN sop_sopplan p ON p.id = c.plan_id
                JOIN sop_sopstep s ON s.id = c.step_id
            ) r
            WHERE c.id = r.id AND r.reason IS NOT NULL
            """,
            params,
        )
        # 2. Windows that ended before the touch could be given.
        cursor.execute(
            "UPDATE claimed SET outcome = 'expired'"
            " WHERE outcome IS NULL AND window_ends_at < %(now)s",
            params,
        )
        quiet_end = in_quiet_hours(policy, now)
        if quiet_end is not None:
            # 3. Quiet hours: nothing is given now; the rest waits for their end.
            params["until"] = quiet_end
            cursor.execute("UPDATE claimed SET outcome = 'deferred' WHERE outcome IS NULL")
        else:
            # 4. The contact policy, per customer: complaint, one plan a day, daily and
            # weekly caps (counting the touches already given).
            cursor.execute(
                """
                WITH candidates AS (
                    SELECT id, customer_id, plan_id, priority, due_at
                    FROM claimed WHERE outcome IS NULL
                ), given AS (
                    SELECT g.customer_id,
                           count(*) FILTER (WHERE g.task_at >= %(day_start)s) AS today,
                           count(*) AS week,
                           min(g.plan_id) FILTER (WHERE g.task_at >= %(day_start)s) AS today_plan
                    FROM sop_touchpoint g
                    WHERE g.customer_id IN (SELECT customer_id FROM candidates)
                      AND g.task_at >= %(week_start)s
                    GROUP BY g.customer_id
                ), top AS (
                    SELECT DISTINCT ON (customer_id) customer_id, plan_id
                    FROM candidates ORDER BY customer_id, priority DESC, due_at, id
                ), ranked AS (
                    SELECT k.*, coalesce(g.today_plan, top.plan_id) AS day_plan,
                           coalesce(g.today, 0) AS today, coalesce(g.week, 0) AS week,
                           row_number() OVER (
                               PARTITION BY k.customer_id,
                                            k.plan_id = coalesce(g.today_plan, top.plan_id)
                               ORDER BY k.priority DESC, k.due_at, k.id) AS rank
                    FROM candidates k JOIN top ON top.customer_id = k.customer_id
                    LEFT JOIN given g ON g.customer_id = k.customer_id
                ), decided AS (
                    SELECT id, CASE
                        WHEN %(complaint_tag)s::bigint IS NOT NULL AND EXISTS (
                            SELECT 1 FROM tagging_customertag ct
                            WHERE ct.customer_id = ranked.customer_id
                              AND ct.tag_id = %(complaint_tag)s::bigint
                              AND ct.added_at >= %(complaint_since)s) THEN 'complaint'
                        WHEN plan_id <> day_plan THEN 'another_plan_today'
                        WHEN today + rank > %(max_day)s THEN 'daily_cap'
                        WHEN week + rank > %(max_week)s THEN 'weekly_cap'
                        END AS reason
                    FROM ranked
                )
                UPDATE claimed c SET outcome = 'suppressed', reason = d.reason
                FROM decided d WHERE c.id = d.id AND d.reason IS NOT NULL
                """,
                params,
            )
        # 5. The rest (no outcome yet) are the guides' tasks. Every outcome is written in
        # one UPDATE of the claimed rows (found through the primary key, never a scan);
        # stopped enrolments stop; automatic steps are queued for sending.
        cursor.execute(
            """
            WITH changed AS (
                UPDATE sop_touchpoint t SET
                    status = CASE WHEN c.outcome = 'deferred' THEN t.status
                                  ELSE coalesce(c.outcome, 'task') END,
                    reason = CASE WHEN c.outcome IN ('stopped', 'suppressed') THEN c.reason
                                  ELSE t.reason END,
                    task_at = CASE WHEN c.outcome IS NULL THEN %(now)s ELSE t.task_at END,
                    due_at = CASE WHEN c.outcome = 'deferred' THEN %(until)s::timestamptz
                                  ELSE t.due_at END,
                    window_ends_at = CASE WHEN c.outcome IS NULL
                                          THEN least(t.window_ends_at, %(quiet_from)s::timestamptz)
                                          ELSE t.window_ends_at END
                FROM claimed c
                WHERE t.id = ANY(ARRAY(SELECT id FROM claimed)) AND t.id = c.id
                  AND t.status = 'planned'
                RETURNING t.id, t.enrollment_id, t.step_id, t.plan_id,
                          coalesce(c.outcome, 'task') AS outcome, c.reason
            ), enrollments AS (
                UPDATE sop_enrollment e SET status = 'stopped', stopped_reason = s.reason,
                       stopped_at = %(now)s
                FROM (SELECT DISTINCT ON (enrollment_id) enrollment_id, plan_id, reason
                      FROM changed WHERE outcome = 'stopped' ORDER BY enrollment_id, id) s
                JOIN sop_sopplan p ON p.id = s.plan_id
                WHERE e.id = s.enrollment_id AND e.status = 'active'
                  AND s.reason NOT IN ('plan_paused', 'step_removed')
                  AND (s.reason <> 'contact_deleted' OR p.stop_on_contact_deleted)
            ), automatic AS (
                INSERT INTO sop_automaticsend (touchpoint_id, status, msgid, error, created_at,
                                               updated_at)
                SELECT changed.id, 'queued', '', '', %(now)s, %(now)s
                FROM changed JOIN sop_sopstep s ON s.id = changed.step_id
                WHERE changed.outcome = 'task' AND s.is_automatic
                ON CONFLICT (touchpoint_id) DO NOTHING
                RETURNING touchpoint_id
            )
            SELECT outcome, reason, count(*), NULL::bigint[] FROM changed GROUP BY 1, 2
            UNION ALL
            SELECT 'automatic', NULL, count(*), coalesce(array_agg(touchpoint_id), '{}')
            FROM automatic
            """,
            params,
        )
        automatic: list[int] = []
        for outcome, reason, count, ids in cursor.fetchall():
            if outcome == "task":
                result.created += count
            elif outcome == "suppressed":
                result.suppressed[reason] += count
            elif outcome == "stopped":
                result.stopped[reason] += count
            elif outcome == "expired":
                result.expired += count
            elif outcome == "deferred":
                result.deferred += count
            elif outcome == "automatic":
                automatic = list(ids)
        result.automatic += automatic
        if automatic:
            from sop.tasks import send_automatic

            transaction.on_commit(lambda ids=automatic: send_automatic.delay(ids))
        return claimed == batch
