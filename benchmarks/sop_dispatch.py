"""SOP dispatch: due touchpoints to guides' tasks, against the naive way; the task list.

    python benchmarks/sop_dispatch.py [--scale F]

Full size (F = 1): 1,000,000 scheduled touchpoints for 200,000 customers followed by
2,000 guides in 250 stores, 100,000 of them (10%) due now, the rest on later days.
The data is loaded in SQL (INSERT … SELECT over generate_series): customers, stores,
guides with their logins (role `guide`), relationships (3% ended, 15% of customers
with a second guide), paid orders (2% paid after their enrolment, for the plan that
stops on purchase), a complaint tag on 1% and opt-outs of 0.5%, the customers' facts
(`facts_refresh()`), and three plans (priorities 10, 5 and 1; one automatic step) with
enrolments made day by day over each plan's span and their touchpoints, inserted as
the app inserts them (an enrolment's steps together, enrolments in time order):
steps before today were dispatched on their day (done, expired, skipped, suppressed:
about 1.2 million rows, this week's count towards the caps), today's are due, later
ones planned. The contact policy is the default one (one touch a day, three a week,
quiet 21:30–09:00, complaint tag for 30 days). Now is a Thursday, 12:00 in Shanghai;
2% of yesterday's steps were missed (still planned, their window ended: they expire).

In one run it measures:
- the naive way first, on a sample of the due touchpoints (5,000 × F, at least 500):
  per touchpoint, the same checks through the ORM (enrolment stopped, opt-out,
  relationship live, purchase since the enrolment, window ended, complaint tag, the
  customer's touches given today and this week by ORM count, another plan today),
  then a save of its status (and an AutomaticSend for an automatic step). The sample
  is then put back as it was (planned; its stopped enrolments active again);
- `sop.scheduling.dispatch(now=…)` over every due touchpoint, after a CHECKPOINT: tasks
  per second is tasks created / seconds (the naive figure is its tasks created / its
  seconds). The machine may be shared: the CPU time of the database backend during
  the dispatch and the load average are reported too (`dispatch_db_cpu_s`, `load`),
  and tasks per second of that CPU (`tasks_per_db_cpu_s`);
- the guide's task list (`/guide/`), over HTTP against the app served by gunicorn
  (2 workers, `scrm.settings_test`: the real settings with a fast password hasher
  and unhashed static files) for 200 guides logged in through the login form, each
  page requested three times after one warm-up: p50 and p95 in ms. When `/guide/`
  does not list the guide's tasks yet (the page checks for the names of the
  customers of the guide's open tasks), the figure is that page's time plus the
  read the list will make, timed here (the guide's open tasks joined to their
  customers, steps and plans, by due time, 50), per request; `task_list_measured`
  says which.

Runs in a database of its own (scrm_bench_sop, BENCH_DATABASE_URL overrides), created
and migrated here, and a Redis database of its own (BENCH_REDIS_URL) for the cache,
the sessions and the broker (the automatic sends the dispatch enqueues are purged at
the end; no worker is needed). The last line printed is one JSON object.
"""

import argparse
import html
import json
import math
import os
import random
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SCRM_DEVELOPMENT", "1")
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/scrm_bench_sop"
)
_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
os.environ["REDIS_URL"] = os.environ["CELERY_BROKER_URL"] = _REDIS
os.environ["CELERY_RESULT_BACKEND"] = _REDIS
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 5, 12, 0, tzinfo=SHANGHAI)  # a Thursday, noon
PASSWORD = "bench-guide-password"  # noqa: S105 - the benchmark's own logins
PAGE_GUIDES = 200
# The plans: step offsets in days whose sum is 9 × the steps, so that with enrolments
# spread evenly over a plan's span, 10% of its scheduled touchpoints are due today.
PLANS = [
    {
        "name": "新客欢迎",
        "priority": 10,
        "stop_on_purchase": True,
        "offsets": [0, 3, 10, 23],
        "automatic": 2,
        "due_share": 0.5,
    },
    {
        "name": "复购提醒",
        "priority": 5,
        "stop_on_purchase": False,
        "offsets": [0, 18],
        "due_share": 0.25,
    },
    {
        "name": "会员关怀",
        "priority": 1,
        "stop_on_purchase": False,
        "offsets": [0, 7, 20],
        "due_share": 0.25,
    },
]
PAGE_ROUNDS = 3


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def backend_cpu_s(cursor) -> float:
    """CPU seconds used so far by this connection's PostgreSQL backend (a local server)."""
    cursor.execute("SELECT pg_backend_pid()")
    fields = Path(f"/proc/{cursor.fetchone()[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def say(text: str) -> None:
    print(text, flush=True)  # noqa: T201


def _h(expression: str, salt: int) -> str:
    """SQL: a stable pseudo-random permille (0–999) of an integer expression."""
    return f"(abs(hashint8(({expression})::bigint * 1000 + {salt})) %% 1000)"


def _coprime(n: int, start: int) -> int:
    """A multiplier coprime with n: i → (i * m) % n is then a permutation of 0 … n-1."""
    m = start
    while math.gcd(m, n) != 1:
        m += 1
    return m


# -- data --------------------------------------------------------------------------------


def load(cursor, *, customers: int, guides: int, stores: int, due: int):
    """Everything the dispatch reads, in SQL. Returns (plans, scheduled, earlier rows)."""
    from django.contrib.auth.hashers import MD5PasswordHasher
    from django.contrib.auth.models import Group

    from sop.models import ContactPolicy, SopPlan, SopStep
    from tagging.models import Tag, TagGroup

    today = NOW.date()
    base = {"now": NOW, "today": today, "C": customers, "G": guides, "S": stores}
    cursor.execute(
        "TRUNCATE sop_touchpoint, sop_enrollment, sop_automaticsend, sop_sopstep, sop_sopplan,"
        " sop_contactpolicy, sop_optout, sop_guidereminder, sop_triggerpending,"
        " tagging_customertag, tagging_tag, tagging_taggroup, contacts_order,"
        " contacts_relationship, contacts_customer, contacts_guide, contacts_store,"
        " django_session, auth_user RESTART IDENTITY CASCADE"
    )

    started = time.monotonic()
    cursor.execute(
        """
        INSERT INTO contacts_store (id, code, name, city, wecom_department_id, manager_userid)
        SELECT s, 'ST' || lpad(s::text, 4, '0'), '门店' || s, '上海', NULL,
               'mgr' || lpad(s::text, 4, '0')
        FROM generate_series(1, %(S)s) s
        """,
        base,
    )
    # One password hash for every guide (the app server uses the MD5 hasher).
    password = MD5PasswordHasher().encode(PASSWORD, "benchsalt")
    cursor.execute(
        """
        INSERT INTO auth_user (id, password, last_login, is_superuser, username, first_name,
                               last_name, email, is_staff, is_active, date_joined)
        SELECT g, %(password)s, NULL, false, 'guide' || lpad(g::text, 5, '0'),
               '导购' || g, '', '', false, true, %(now)s
        FROM generate_series(1, %(G)s) g
        """,
        {**base, "password": password},
    )
    cursor.execute(
        "INSERT INTO auth_user_groups (user_id, group_id)"
        " SELECT g, %(group)s FROM generate_series(1, %(G)s) g",
        {**base, "group": Group.objects.get(name="guide").pk},
    )
    cursor.execute(
        """
        INSERT INTO contacts_guide (id, wecom_userid, name, store_id, user_id, is_active)
        SELECT g, 'guide' || lpad(g::text, 5, '0'), '导购' || g, (g - 1) %% %(S)s + 1, g, true
        FROM generate_series(1, %(G)s) g
        """,
        base,
    )
    # Customers; each followed by one guide (spread by a permutation), 3% of those ended,
    # 15% also following a second guide, added later.
    primary = f"((i::bigint * {_coprime(guides, 7919)}) %% %(G)s + 1)"
    ended = f"{_h('i', 1)} < 30"
    second = f"{_h('i', 2)} < 150"
    cursor.execute(
        f"""
        INSERT INTO contacts_customer (id, external_userid, name, type, gender, avatar,
            corp_name, unionid, joined_at, birthday, is_member, merged_into_id, created_at,
            updated_at)
        SELECT i, 'wmb' || lpad(i::text, 9, '0'), '顾客' || lpad(i::text, 7, '0'), 1, i %% 3,
               '', '', '', %(now)s - (i %% 700) * interval '1 day',
               CASE WHEN i %% 4 = 0 THEN date '1985-01-01' + (i %% 9000) END,
               NOT ({ended}) OR {second}, NULL, %(now)s, %(now)s
        FROM generate_series(1, %(C)s) i
        """,  # noqa: S608
        base,
    )
    cursor.execute(
        f"""
        INSERT INTO contacts_relationship (customer_id, guide_id, remark, description,
            remark_corp_name, remark_mobiles, added_at, add_way, oper_userid, state,
            wecom_tag_ids, is_active, ended_at, ended_by, seen_by_run, updated_at)
        SELECT i, {primary}, CASE WHEN i %% 2 = 0 THEN '老顾客' || i ELSE '' END, '', '',
               '{{}}'::varchar[], %(now)s - (i %% 700 + 30) * interval '1 day', 1, '', '',
               '{{}}'::varchar[],
               NOT ({ended}), CASE WHEN {ended} THEN %(now)s - interval '5 days' END,
               CASE WHEN {ended} THEN 'customer' ELSE '' END, NULL::bigint, %(now)s
        FROM generate_series(1, %(C)s) i
        UNION ALL
        SELECT i, ({primary} + %(G)s / 2 - 1) %% %(G)s + 1, '', '', '', '{{}}'::varchar[],
               %(now)s - (i %% 20 + 1) * interval '1 day', 1, '', '', '{{}}'::varchar[], true,
               NULL::timestamptz, '', NULL::bigint, %(now)s
        FROM generate_series(1, %(C)s) i WHERE {second} AND %(G)s > 1
        """,  # noqa: S608
        base,
    )
    # Paid orders: 40% bought two months ago; 2% bought two hours ago (after enrolling).
    cursor.execute(
        f"""
        INSERT INTO contacts_order (channel, channel_order_id, parent_order_id, status,
            paid_at, unmatched_reason, buyer_phone_hash, buyer_phone_masked, buyer_unionid,
            buyer_id, buyer_name, store_code, guide_userid, amount, refund_amount, line_count,
            content_hash, created_at, updated_at, customer_id, last_import_id)
        SELECT 'tmall', 'B' || i || '-' || n, '', 'paid', paid_at, '', '', '', '', '', '',
               '', '', 199.00, 0, 0, '', %(now)s, %(now)s, i, NULL
        FROM (
            SELECT i, 1 AS n, %(now)s - interval '60 days' - (i %% 30) * interval '1 day'
                   AS paid_at
            FROM generate_series(1, %(C)s) i WHERE {_h("i", 4)} < 400
            UNION ALL
            SELECT i, 2, %(now)s - interval '2 hours'
            FROM generate_series(1, %(C)s) i WHERE {_h("i", 5)} < 20
        ) o
        """,  # noqa: S608
        base,
    )
    group = TagGroup.objects.create(name="服务")
    complaint = Tag.objects.create(group=group, name="投诉过")
    cursor.execute(
        f"""
        INSERT INTO tagging_customertag (customer_id, tag_id, added_at)
        SELECT i, %(tag)s, %(now)s - interval '10 days'
        FROM generate_series(1, %(C)s) i WHERE {_h("i", 6)} < 10
        """,  # noqa: S608
        {**base, "tag": complaint.pk},
    )
    cursor.execute(
        f"""
        INSERT INTO sop_optout (customer_id, reason, created_by_id, created_at)
        SELECT i, '客户要求', NULL, %(now)s - interval '3 days'
        FROM generate_series(1, %(C)s) i WHERE {_h("i", 7)} < 5
        """,  # noqa: S608
        base,
    )
    for table in ("contacts_store", "contacts_guide", "auth_user", "contacts_customer"):
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608
        )
    say(f"  contacts loaded in {time.monotonic() - started:.1f} s")

    started = time.monotonic()
    from contacts.facts import facts_refresh

    facts_refresh()
    say(f"  facts refreshed in {time.monotonic() - started:.1f} s")

    ContactPolicy.objects.create(complaint_tag=complaint)  # the defaults otherwise
    started = time.monotonic()
    script = "{称呼}您好，我是{门店}的{导购姓名}，最近新到了几款，给您留了尺码～"
    plans = []
    for spec in PLANS:
        plan = SopPlan.objects.create(
            name=spec["name"],
            trigger=SopPlan.Trigger.MANUAL,
            priority=spec["priority"],
            stop_on_purchase=spec["stop_on_purchase"],
            started_at=NOW - timedelta(days=90),
        )
        for position, offset in enumerate(spec["offsets"], start=1):
            SopStep.objects.create(
                plan=plan,
                position=position,
                offset_days=offset,
                script=script,
                is_automatic=position == spec.get("automatic"),
            )
        # m enrolments a day over the plan's span (its last offset + 1 days): m × steps
        # of them are due today, and 10 × that many are scheduled.
        per_day = round(due * spec["due_share"] / len(spec["offsets"]))
        plans.append((plan, spec, per_day))
    # Enrolments, oldest first (as they were made): enrolment j of a plan was triggered
    # (span - 1 - j // per_day) days ago, 08:00–12:00, for a customer spread by a
    # permutation, with the customer's first guide.
    selects = []
    for plan, spec, per_day in plans:
        span = spec["offsets"][-1] + 1
        m = _coprime(customers, 7919 + 2 * plan.pk)
        selects.append(
            f"""
            SELECT {plan.pk} AS plan_id, i AS customer_id, {primary} AS guide_id,
                   'bench:' || j AS trigger_key,
                   ((%(today)s::date - ({span - 1} - j / {per_day})) + time '08:00'
                    + ({_h("j", plan.pk)} %% 240) * interval '1 minute')
                   AT TIME ZONE 'Asia/Shanghai' AS triggered_at
            FROM (SELECT j, (j::bigint * {m} + {plan.pk}) %% %(C)s + 1 AS i
                  FROM generate_series(0, {span * per_day - 1}) j) s
            """  # noqa: S608
        )
    # Bulk loads: the rows are consistent by construction, so the foreign keys' triggers
    # are skipped, and the touchpoints' secondary indexes are built after the rows.
    cursor.execute("SET session_replication_role = replica")
    cursor.execute(
        f"""
        INSERT INTO sop_enrollment (plan_id, customer_id, guide_id, trigger_key,
            triggered_at, status, stopped_reason, stopped_at, created_at)
        SELECT plan_id, customer_id, guide_id, trigger_key, triggered_at, 'active', '', NULL,
               triggered_at
        FROM ({" UNION ALL ".join(selects)}) x
        ORDER BY triggered_at, plan_id, trigger_key
        """,  # noqa: S608
        base,
    )
    enrollments = cursor.rowcount
    cursor.execute(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'sop_touchpoint' AND indexname NOT IN"
        " (SELECT conname FROM pg_constraint WHERE conrelid = 'sop_touchpoint'::regclass)"
    )
    indexes = [row[0] for row in cursor.fetchall()]
    for definition in indexes:
        cursor.execute("DROP INDEX " + definition.split(" INDEX ", 1)[1].split(" ON ")[0])
    # Each enrolment's steps: the ones before today were dispatched on their day (done,
    # expired, skipped, suppressed; given ones count towards this week's caps), today's
    # is due now, later ones are planned. 2% of yesterday's were missed (still planned,
    # their window ended: they expire).
    history = f"""(d.day < %(today)s::date AND NOT (
        d.day = %(today)s::date - 1 AND {_h("e.id", 22)} < 20))"""
    fate = _h("e.id * 8 + s.position", 23)
    cursor.execute(
        f"""
        INSERT INTO sop_touchpoint (enrollment_id, step_id, plan_id, customer_id, guide_id,
            priority, due_at, window_ends_at, status, reason, task_at, done_at)
        SELECT e.id, s.id, e.plan_id, e.customer_id, e.guide_id, p.priority, d.due_at,
               (d.day + time '21:00') AT TIME ZONE 'Asia/Shanghai',
               CASE WHEN NOT {history} THEN 'planned' WHEN {fate} < 600 THEN 'done'
                    WHEN {fate} < 750 THEN 'expired' WHEN {fate} < 800 THEN 'skipped'
                    ELSE 'suppressed' END,
               CASE WHEN NOT {history} THEN '' WHEN {fate} BETWEEN 750 AND 799 THEN '客户在忙'
                    WHEN {fate} >= 900 THEN 'another_plan_today'
                    WHEN {fate} >= 800 THEN 'daily_cap' ELSE '' END,
               CASE WHEN {history} AND {fate} < 800 THEN d.due_at END,
               CASE WHEN {history} AND {fate} < 600 THEN d.due_at + interval '40 minutes'
                    WHEN {history} AND {fate} >= 750 AND {fate} < 800
                    THEN d.due_at + interval '5 minutes' END
        FROM sop_enrollment e JOIN sop_sopplan p ON p.id = e.plan_id
        JOIN sop_sopstep s ON s.plan_id = e.plan_id
        CROSS JOIN LATERAL (
            SELECT (e.triggered_at AT TIME ZONE 'Asia/Shanghai')::date + s.offset_days AS day,
                   greatest((e.triggered_at AT TIME ZONE 'Asia/Shanghai')::time, time '10:00')
                   AS at) l
        CROSS JOIN LATERAL (
            SELECT l.day, (l.day + l.at) AT TIME ZONE 'Asia/Shanghai' AS due_at) d
        ORDER BY e.id, s.position
        """,  # noqa: S608
        base,
    )
    total = cursor.rowcount
    cursor.execute("RESET session_replication_role")
    for definition in indexes:
        cursor.execute(definition)
    cursor.execute("SELECT count(*) FROM sop_touchpoint WHERE status = 'planned'")
    scheduled = cursor.fetchone()[0]
    say(
        f"  {enrollments:,} enrolments and {total:,} touchpoints generated in"
        f" {time.monotonic() - started:.1f} s"
    )
    return [plan for plan, _, _ in plans], scheduled, total - scheduled


# -- the naive way -------------------------------------------------------------------------


def naive_dispatch(ids: list[int], now: datetime) -> dict:
    """Per touchpoint, the dispatch's checks through the ORM, then a save."""
    from django.db.models import Q

    from contacts.models import Order, Relationship
    from sop.models import AutomaticSend, ContactPolicy, OptOut, Touchpoint
    from sop.scheduling import _today, local_midnight
    from tagging.models import CustomerTag

    policy = ContactPolicy.current()
    today = _today(now)
    day_start = local_midnight(today)
    week_start = local_midnight(today - timedelta(days=today.weekday()))
    complaint_since = now - timedelta(days=policy.complaint_days)
    counts = {"created": 0, "suppressed": 0, "stopped": 0, "expired": 0, "enrollments": []}
    queryset = (
        Touchpoint.objects.filter(pk__in=ids)
        .select_related("enrollment", "plan", "step")
        .order_by("due_at", "id")
    )
    for touchpoint in queryset:
        enrollment, plan, reason = touchpoint.enrollment, touchpoint.plan, None
        customer_id = touchpoint.customer_id
        if enrollment.status == "stopped":
            reason = enrollment.stopped_reason
        elif OptOut.objects.filter(customer_id=customer_id).exists():
            reason = "opted_out"
        elif (
            plan.stop_on_contact_deleted
            and not Relationship.objects.filter(
                customer_id=customer_id, guide_id=touchpoint.guide_id, is_active=True
            ).exists()
        ):
            reason = "contact_deleted"
        elif (
            plan.stop_on_purchase
            and Order.objects.filter(
                customer_id=customer_id,
                status__in=["paid", "partially_refunded"],
                paid_at__gt=enrollment.triggered_at,
                paid_at__lte=now,
            ).exists()
        ):
            reason = "purchased"
        if reason:
            touchpoint.status, touchpoint.reason = "stopped", reason
            touchpoint.save(update_fields=["status", "reason"])
            if enrollment.status == "active":
                enrollment.status, enrollment.stopped_reason = "stopped", reason
                enrollment.stopped_at = now
                enrollment.save(update_fields=["status", "stopped_reason", "stopped_at"])
                counts["enrollments"].append(enrollment.pk)
            counts["stopped"] += 1
            continue
        if touchpoint.window_ends_at < now:
            touchpoint.status = "expired"
            touchpoint.save(update_fields=["status"])
            counts["expired"] += 1
            continue
        given = Touchpoint.objects.filter(customer_id=customer_id, task_at__isnull=False)
        if (
            policy.complaint_tag_id
            and CustomerTag.objects.filter(
                customer_id=customer_id,
                tag_id=policy.complaint_tag_id,
                added_at__gte=complaint_since,
            ).exists()
        ):
            reason = "complaint"
        elif given.filter(~Q(plan_id=touchpoint.plan_id), task_at__gte=day_start).exists():
            reason = "another_plan_today"
        elif given.filter(task_at__gte=day_start).count() >= policy.max_per_day:
            reason = "daily_cap"
        elif given.filter(task_at__gte=week_start).count() >= policy.max_per_week:
            reason = "weekly_cap"
        if reason:
            touchpoint.status, touchpoint.reason = "suppressed", reason
            touchpoint.save(update_fields=["status", "reason"])
            counts["suppressed"] += 1
            continue
        touchpoint.status, touchpoint.task_at = "task", now
        touchpoint.save(update_fields=["status", "task_at"])
        if touchpoint.step.is_automatic:
            AutomaticSend.objects.create(touchpoint=touchpoint)
        counts["created"] += 1
    return counts


def naive_undo(cursor, ids: list[int], enrollments: list[int]) -> None:
    cursor.execute("DELETE FROM sop_automaticsend WHERE touchpoint_id = ANY(%s)", [ids])
    cursor.execute(
        "UPDATE sop_touchpoint SET status = 'planned', reason = '', task_at = NULL"
        " WHERE id = ANY(%s)",
        [ids],
    )
    cursor.execute(
        "UPDATE sop_enrollment SET status = 'active', stopped_reason = '', stopped_at = NULL"
        " WHERE id = ANY(%s)",
        [enrollments],
    )


# -- the guide's task list over HTTP --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve() -> tuple[subprocess.Popen, str, Path]:
    """gunicorn with 2 workers on the benchmark's database; returns (process, base, log)."""
    import requests

    port = _free_port()
    log = Path(tempfile.mkstemp(prefix="bench-sop-gunicorn-", suffix=".log")[1])
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "scrm.settings_test",
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": _REDIS,
        "CELERY_BROKER_URL": _REDIS,
        "CELERY_RESULT_BACKEND": _REDIS,
    }
    with open(log, "w") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "scrm.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "2",
                "--timeout",
                "120",
            ],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode}: {log.read_text()}")
        try:
            if requests.get(f"{base}/login/", timeout=30).status_code == 200:
                return process, base, log
        except requests.RequestException:
            pass
        time.sleep(0.3)
    process.kill()
    process.wait()
    raise SystemExit(f"gunicorn did not answer within 90 s: {log.read_text()}")


def login(base: str, username: str):
    import requests

    session = requests.Session()
    form = session.get(f"{base}/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    if token is None:
        raise SystemExit("no CSRF token in the login form")
    answer = session.post(
        f"{base}/login/",
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": token.group(1),
            "next": "",
        },
        headers={"Referer": f"{base}/login/"},
        allow_redirects=False,
        timeout=30,
    )
    if answer.status_code != 302:
        raise SystemExit(f"login of {username} failed: HTTP {answer.status_code}")
    return session


def _equivalent_read(guide_id: int) -> None:
    """What the task list reads: the guide's open tasks, with customer, step and plan."""
    from sop.models import Touchpoint

    list(
        Touchpoint.objects.filter(guide_id=guide_id, status="task")
        .select_related("customer", "step", "plan")
        .order_by("due_at", "id")[:50]
    )


def task_list(guide_ids: list[int]) -> dict:
    from contacts.models import Guide
    from sop.models import Touchpoint

    process, base, log = serve()
    try:
        sessions = {}
        started = time.monotonic()
        usernames = dict(Guide.objects.filter(pk__in=guide_ids).values_list("pk", "wecom_userid"))
        for guide_id in guide_ids:
            sessions[guide_id] = login(base, usernames[guide_id])
        say(f"  {len(sessions)} guides logged in in {time.monotonic() - started:.1f} s")
        # Does /guide/ list the guide's tasks? The customers of their open tasks must
        # show, on the pages of the five guides with the most.
        probes = sorted(
            guide_ids,
            key=lambda g: -Touchpoint.objects.filter(guide_id=g, status="task").count(),
        )[:5]
        lists_tasks, text = False, ""
        for probe in probes:
            page = sessions[probe].get(f"{base}/guide/", timeout=60)
            if page.status_code != 200:
                raise SystemExit(
                    f"/guide/ answered HTTP {page.status_code}: {log.read_text()[-3000:]}"
                )
            names = set(
                Touchpoint.objects.filter(guide_id=probe, status="task").values_list(
                    "customer__name", flat=True
                )
            )
            text = html.unescape(page.text)
            lists_tasks = lists_tasks or any(name in text for name in names)
        if not lists_tasks:
            main = text[text.find("<main") :][:300] if "<main" in text else text[:300]
            say(f"  /guide/ does not list the guides' tasks; it shows: {' '.join(main.split())}")
        rng = random.Random(11)
        for guide_id in guide_ids:  # warm-up: one request each, not timed
            sessions[guide_id].get(f"{base}/guide/", timeout=60)
        page_ms, read_ms = [], []
        for _ in range(PAGE_ROUNDS):
            order = list(guide_ids)
            rng.shuffle(order)
            for guide_id in order:
                started = time.perf_counter()
                answer = sessions[guide_id].get(f"{base}/guide/", timeout=60)
                page_ms.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    raise SystemExit(f"/guide/ answered HTTP {answer.status_code}")
                if not lists_tasks:
                    started = time.perf_counter()
                    _equivalent_read(guide_id)
                    read_ms.append((time.perf_counter() - started) * 1000)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.unlink(missing_ok=True)
    totals = page_ms if lists_tasks else [p + r for p, r in zip(page_ms, read_ms, strict=True)]
    return {
        "measured": "guide_page" if lists_tasks else "placeholder_page+equivalent_read",
        "requests": len(totals),
        "p50": statistics.median(totals),
        "p95": statistics.quantiles(totals, n=20, method="inclusive")[18],
        "page_p95": statistics.quantiles(page_ms, n=20, method="inclusive")[18],
        "read_p95": (
            statistics.quantiles(read_ms, n=20, method="inclusive")[18] if read_ms else None
        ),
    }


# -- the run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument(
        "--no-task-list", action="store_true", help="skip the task list over HTTP (development)"
    )
    args = parser.parse_args()
    customers = max(1_000, int(200_000 * args.scale))
    guides = max(20, int(2_000 * args.scale))
    stores = max(2, guides // 8)
    touchpoints = customers * 5
    due = touchpoints // 10
    naive_count = max(500, int(5_000 * args.scale))

    from scrm import ensure_database

    ensure_database.main()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from scrm.celery import app as celery_app
    from sop.scheduling import dispatch

    say(
        f"loading {touchpoints:,} touchpoints for {customers:,} customers and {guides:,}"
        f" guides ({due:,} due now) …"
    )
    started = time.monotonic()
    with connection.cursor() as cursor:
        _, scheduled, history = load(
            cursor,
            customers=customers,
            guides=guides,
            stores=stores,
            due=due,
        )
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("CHECKPOINT")
        cursor.execute(
            "SELECT count(*) FROM sop_touchpoint WHERE status = 'planned' AND due_at <= %s",
            [NOW],
        )
        due_now = cursor.fetchone()[0]
    say(
        f"loaded in {time.monotonic() - started:.1f} s: {scheduled:,} scheduled touchpoints"
        f" ({due_now:,} due now) and {history:,} earlier ones (done, expired, skipped, suppressed)"
    )

    # 1. The naive way, on a sample of the due touchpoints; then put back as it was.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM sop_touchpoint WHERE status = 'planned' AND due_at <= %s"
            " ORDER BY hashint8(id * 7 + 3), id LIMIT %s",
            [NOW, naive_count],
        )
        sample = [row[0] for row in cursor.fetchall()]
    started = time.monotonic()
    naive = naive_dispatch(sample, NOW)
    naive_seconds = time.monotonic() - started
    naive_rate = naive["created"] / naive_seconds
    say(
        f"naive (ORM per touchpoint, {len(sample):,}): {naive_rate:,.0f} tasks/s"
        f" ({naive['created']:,} tasks, {naive['suppressed']:,} suppressed,"
        f" {naive['stopped']:,} stopped, {naive['expired']:,} expired in {naive_seconds:.1f} s)"
    )
    with connection.cursor() as cursor:
        naive_undo(cursor, sample, naive["enrollments"])
        cursor.execute("VACUUM ANALYZE sop_touchpoint")
        cursor.execute("VACUUM ANALYZE sop_enrollment")
        cursor.execute("VACUUM ANALYZE sop_automaticsend")

    # 2. The dispatch.
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")
        cpu_before = backend_cpu_s(cursor)
    load_average = os.getloadavg()[0]
    result = dispatch(now=NOW)
    dispatch_rss = peak_rss_mb()
    with connection.cursor() as cursor:
        dispatch_cpu = backend_cpu_s(cursor) - cpu_before
    seconds = result.seconds
    rate = result.created / seconds
    suppressed = sum(result.suppressed.values())
    stopped = sum(result.stopped.values())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM sop_touchpoint WHERE status = 'planned' AND due_at <= %s",
            [NOW],
        )
        left = cursor.fetchone()[0]
    decided = result.created + suppressed + stopped + result.expired
    if left or decided < due_now:
        raise SystemExit(f"dispatch left {left} due touchpoints; decided {decided} of {due_now}")
    say(
        f"dispatch: {rate:,.0f} tasks/s ({result.created:,} tasks in {seconds:.2f} s; database"
        f" backend CPU {dispatch_cpu:.2f} s, load average {load_average:.1f});"
        f" suppressed {dict(result.suppressed)}; stopped {dict(result.stopped)};"
        f" expired {result.expired:,}; automatic {len(result.automatic):,}"
    )
    celery_app.control.purge()  # the automatic sends the dispatch enqueued

    # 3. The guide's task list, over HTTP.
    from django.db.models import Count

    from sop.models import Touchpoint

    with_tasks = list(
        Touchpoint.objects.filter(status="task")
        .values("guide_id")
        .annotate(n=Count("id"))
        .order_by("guide_id")
        .values_list("guide_id", flat=True)
    )
    page_guides = random.Random(3).sample(with_tasks, k=min(PAGE_GUIDES, len(with_tasks)))
    with connection.cursor() as cursor:
        # The statistics autovacuum would gather after the dispatch: the planner must know
        # there are open tasks now (there were none at the last ANALYZE).
        cursor.execute("ANALYZE sop_touchpoint")
    page = {"measured": "skipped", "p95": None, "p50": None}
    if not args.no_task_list:
        page = task_list(page_guides)
        say(
            f"task list ({page['measured']}, {page['requests']} requests of"
            f" {len(page_guides)} guides): p50 {page['p50']:.1f} ms, p95 {page['p95']:.1f} ms"
            + (
                f" (page p95 {page['page_p95']:.1f} ms, read p95 {page['read_p95']:.1f} ms)"
                if page["read_p95"] is not None
                else ""
            )
        )

    output = {
        "touchpoints": scheduled,
        "due": due_now,
        "created": result.created,
        "suppressed": suppressed,
        "suppressed_by_reason": dict(result.suppressed),
        "stopped": stopped,
        "expired": result.expired,
        "automatic": len(result.automatic),
        "dispatch_seconds": round(seconds, 2),
        "dispatch_db_cpu_s": round(dispatch_cpu, 2),
        # Tasks per second of the database backend's CPU: what the machine's other load
        # does not change (tasks_per_s is wall-clock).
        "tasks_per_db_cpu_s": round(result.created / dispatch_cpu) if dispatch_cpu else None,
        "load": round(load_average, 1),
        "tasks_per_s": round(rate),
        "naive_tasks_per_s": round(naive_rate),
        "ratio_to_naive": round(rate / naive_rate, 1),
        "naive_sample": len(sample),
        "task_list_p95_ms": page["p95"] and round(page["p95"], 1),
        "task_list_p50_ms": page["p50"] and round(page["p50"], 1),
        "task_list_measured": page["measured"],
        "peak_rss_mb": round(dispatch_rss, 1),
    }
    print(json.dumps(output, ensure_ascii=False))  # noqa: T201


if __name__ == "__main__":
    main()
