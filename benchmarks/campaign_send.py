"""A mass-message campaign: select, check limits and hand over to WeCom, against the naive way.

    python benchmarks/campaign_send.py [--scale F]

Full size (F = 1): a campaign (A/B, 10% holdout) to every member of a brand of 200,000
customers followed by 2,000 guides, served by the bundled emulator in a process of its
own over HTTP. The customers, guides and relationships come from the emulator through
the real full sync (so WeCom's data and ours agree), then the customers' facts
(`facts_refresh()`); what the limits check is loaded in SQL (INSERT … SELECT over
generate_series): opt-outs (0.5%), a complaint tag added this week (1%), three earlier
campaigns this month to everyone, 30 more to 1% (over WeCom's monthly quota) and one
earlier today to 2% (over the brand's one touch a day).

Measures in one run:
- `campaign_prepare`: the recipients with their guide and variant, held back by reason;
- `campaign_send`: one add_msg_template per guide and variant (≤ 10,000 customers each),
  with a fresh access token; API calls against the minimum (gettoken + one call per
  guide, variant and 10,000 customers);
- the naive way on a sample (2,000 × F, at least 200, of the recipients): per customer
  the same checks through the ORM and one add_msg_template with that one customer (a
  task per customer for the guide to confirm), then a save; its seconds per customer
  times the customers handed over is `naive_seconds_scaled`;
- `peak_rss_mb`, and `peak_rss_before_campaign_mb` (the sync's): the campaign streams its
  recipients, so it should not raise the peak.
Runs in a database of its own (scrm_bench_campaign, BENCH_DATABASE_URL overrides) and a
Redis database of its own (BENCH_REDIS_URL). The last line is one JSON object.
"""

import argparse
import json
import os
import resource
import sys
import time
from datetime import datetime, timedelta
from math import ceil
from pathlib import Path
from zoneinfo import ZoneInfo

from emulator_process import emulator_start

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SCRM_DEVELOPMENT", "1")
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/scrm_bench_campaign"
)
_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
os.environ["REDIS_URL"] = os.environ["CELERY_BROKER_URL"] = _REDIS
os.environ["CELERY_RESULT_BACKEND"] = _REDIS
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")
SEED = 17
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=SHANGHAI)  # a Friday, noon; November has 30 days
PER_CALL = 10_000  # add_msg_template: external_userid ≤ 10,000


def say(text: str) -> None:
    print(text, flush=True)  # noqa: T201


def check(condition: bool, failure: str) -> None:
    if not condition:
        raise SystemExit(f"benchmark check failed: {failure}")


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _h(expression: str, salt: int) -> str:
    """SQL: a stable pseudo-random permille (0–999) of an integer expression."""
    return f"(abs(hashint8(({expression})::bigint * 1000 + {salt})) %% 1000)"


def load_limits(cursor) -> dict:
    """What the checks read besides the facts: opt-outs, complaints, earlier sends."""
    from sop.models import ContactPolicy
    from tagging.models import Tag, TagGroup

    group = TagGroup.objects.create(name="服务")
    complaint = Tag.objects.create(group=group, name="投诉")
    ContactPolicy.objects.all().delete()
    ContactPolicy.objects.create(complaint_tag=complaint)  # 1 a day, complaints 30 days
    params = {"now": NOW, "tag": complaint.pk, "month": NOW.replace(day=1, hour=9)}
    cursor.execute(
        f"""
        INSERT INTO sop_optout (customer_id, reason, created_at)
        SELECT id, '不想收到', %(now)s FROM contacts_customer WHERE {_h("id", 1)} < 5
        """,  # noqa: S608 - fixed expressions
        params,
    )
    cursor.execute(
        f"""
        INSERT INTO tagging_customertag (customer_id, tag_id, added_at)
        SELECT id, %(tag)s, %(now)s - interval '3 days' FROM contacts_customer
        WHERE {_h("id", 2)} < 10
        """,  # noqa: S608
        params,
    )
    # Earlier campaigns: 3 to everyone this month, 30 more to 1%, one this morning to 2%.
    cursor.execute(
        """
        INSERT INTO campaigns_campaign (name, segment, text, text_b, attachments,
            holdout_percent, attribution_days, cost, status, prepared_at, sent_at, created_at)
        SELECT '往期 ' || n, '{"fact": "is_member", "op": "is", "value": true}', '往期', '',
               '[]', 0, 7, 0, 'sent', sent, sent, sent
        FROM (SELECT n, CASE WHEN n = 34 THEN %(now)s - interval '3 hours'
                             ELSE %(month)s + (n - 1) * interval '10 hours' END AS sent
              FROM generate_series(1, 34) n) s
        RETURNING id, name
        """,
        params,
    )
    earlier = {int(name.split()[1]): pk for pk, name in cursor.fetchall()}
    for number, pk in sorted(earlier.items()):
        if number <= 3:
            who = "true"
        elif number <= 33:
            who = f"{_h('c.id', 3)} < 10"
        else:
            who = f"{_h('c.id', 4)} < 20"
        cursor.execute(
            f"""
            INSERT INTO campaigns_campaignrecipient (campaign_id, customer_id, guide_id, variant,
                                                     status, reason, sent_at)
            SELECT %(campaign)s, c.id, r.guide_id, 'a',
                   CASE WHEN {_h("c.id", 5)} < 800 THEN 'sent' ELSE 'queued' END, '',
                   CASE WHEN {_h("c.id", 5)} < 800 THEN cp.sent_at END
            FROM contacts_customer c
            JOIN LATERAL (SELECT guide_id FROM contacts_relationship
                          WHERE customer_id = c.id AND is_active LIMIT 1) r ON true
            JOIN campaigns_campaign cp ON cp.id = %(campaign)s
            WHERE {who}
            """,  # noqa: S608
            {"campaign": pk},
        )
    cursor.execute("ANALYZE")
    cursor.execute("SELECT count(*) FROM campaigns_campaignrecipient")
    return {"earlier_campaigns": len(earlier), "earlier_recipients": cursor.fetchone()[0]}


def naive(sample: list[tuple], gateway, campaign) -> float:
    """Per customer: the checks through the ORM, one add_msg_template, a save. Seconds."""
    from campaigns.models import CampaignRecipient
    from campaigns.sending import month_quota
    from sop.models import ContactPolicy, OptOut, Touchpoint
    from tagging.models import CustomerTag

    policy = ContactPolicy.current()
    day_start = NOW.replace(hour=0, minute=0)
    month_start = day_start.replace(day=1)
    started = time.monotonic()
    for recipient_id, customer_id, userid, external_userid in sample:
        if OptOut.objects.filter(customer_id=customer_id).exists():
            continue
        if CustomerTag.objects.filter(
            customer_id=customer_id,
            tag_id=policy.complaint_tag_id,
            added_at__gte=NOW - timedelta(days=policy.complaint_days),
        ).exists():
            continue
        received = CampaignRecipient.objects.filter(
            customer_id=customer_id, status__in=["queued", "sent"]
        ).exclude(campaign=campaign)
        if received.filter(campaign__sent_at__gte=month_start).count() >= month_quota(NOW):
            continue
        today = received.filter(campaign__sent_at__gte=day_start).count()
        if (
            today
            + Touchpoint.objects.filter(customer_id=customer_id, task_at__gte=day_start).count()
            >= policy.max_per_day
        ):
            continue
        sent = gateway.add_msg_template(
            sender=userid, external_userids=[external_userid], text=campaign.text, attachments=[]
        )
        status = "not_friend" if sent["fail_list"] else "queued"
        CampaignRecipient.objects.filter(pk=recipient_id).update(status=status)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    customers = max(1_000, int(200_000 * args.scale))
    guides = max(10, int(2_000 * args.scale))
    naive_sample = max(200, int(2_000 * args.scale))

    from scrm import ensure_database

    ensure_database.main()
    import django

    django.setup()
    import logging

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    logging.getLogger("scrm.wecom.gateway").setLevel(logging.WARNING)
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE campaigns_campaign, campaigns_campaignrecipient, campaigns_campaignmessage,"
            " sop_optout, sop_touchpoint, sop_contactpolicy, tagging_customertag, tagging_tag,"
            " tagging_taggroup, contacts_relationshipevent, contacts_relationship,"
            " contacts_customeridentity, contacts_customergroupmember, contacts_customergroup,"
            " contacts_syncseen, contacts_syncrun, contacts_customerfacts,"
            " contacts_customerfactspending, contacts_customer, contacts_guide, contacts_store"
            " RESTART IDENTITY CASCADE"
        )
    import redis

    redis.Redis.from_url(_REDIS).flushdb()  # the benchmark's own Redis database

    emulator, port, serving = emulator_start(seed=SEED, guides=guides, customers=customers)
    say(serving)
    settings.WECOM_API_BASE = f"http://127.0.0.1:{port}/cgi-bin/"
    # As benchmarks/sync_contacts.py: the gateway's own pacing (100 calls/s per API by
    # default; WeCom allows 10,000 a minute) would measure the pacing, not the work.
    settings.WECOM_RATE_PER_SECOND = 10_000
    try:
        from campaigns.models import Campaign, CampaignMessage, CampaignRecipient
        from campaigns.sending import campaign_prepare, campaign_send
        from contacts import services
        from contacts.facts import facts_refresh
        from scrm.wecom.gateway import WeComGateway

        started = time.monotonic()
        run = services.sync_run_start(triggered_by="benchmark")
        run = services.sync_run_execute(run_id=run.pk)
        check(run.status == "succeeded", f"sync failed: {run.errors}")
        facts_refresh()
        with connection.cursor() as cursor:
            loaded = load_limits(cursor)
        say(
            f"data: {customers:,} customers, {guides:,} guides (sync {run.api_calls} calls),"
            f" {loaded['earlier_recipients']:,} earlier recipients,"
            f" {time.monotonic() - started:.1f} s"
        )

        peak_before_campaign = peak_rss_mb()  # the sync's; the campaign should not raise it
        campaign = Campaign.objects.create(
            name="双十二预热",
            segment={"fact": "is_member", "op": "is", "value": True},
            text="双十二会员专享：全场家居服 8 折",
            text_b="双十二会员专享：满 300 减 60",
            holdout_percent=10,
            status=Campaign.Status.SCHEDULED,
            schedule_at=NOW,
        )
        started = time.monotonic()
        reach = campaign_prepare(campaign=campaign, now=NOW)
        prepare_seconds = time.monotonic() - started
        held = sum(reach["held"].values())
        say(
            f"prepare: {reach['matched']:,} matched, {reach['reach']:,} to send, {held:,} held"
            f" {reach['held']}, {reach['holdout']:,} holdout in {prepare_seconds:.2f} s"
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM campaigns_campaignrecipient WHERE campaign_id = %s"
                " AND status = 'targeted' GROUP BY guide_id, variant",
                [campaign.pk],
            )
            sizes = [n for (n,) in cursor.fetchall()]
        api_calls_min = 1 + sum(ceil(n / PER_CALL) for n in sizes)  # gettoken + the tasks

        gateway = WeComGateway.from_settings()
        gateway.client.session.delete(gateway.client.access_token_key)  # a fresh token
        waited = [0.0]
        call = gateway.call

        def timed_call(*args, **kwargs):
            began = time.monotonic()
            try:
                return call(*args, **kwargs)
            finally:
                waited[0] += time.monotonic() - began

        gateway.call = timed_call
        started = time.monotonic()
        result = campaign_send(campaign_id=campaign.pk, gateway=gateway, now=NOW)
        send_seconds = time.monotonic() - started
        gateway.call = call
        check(not result.failed, f"send failed: {result.errors}")
        messages = CampaignMessage.objects.filter(campaign=campaign, status="created").count()
        check(result.messages == messages, f"{result.messages} tasks, {messages} created")
        left = CampaignRecipient.objects.filter(campaign=campaign, status="targeted").count()
        check(left == 0, f"{left} recipients not handed over")
        check(result.recipients == reach["reach"], f"{result.recipients} of {reach['reach']}")
        check(result.api_calls == api_calls_min, f"{result.api_calls} calls, {api_calls_min} min")
        seconds = prepare_seconds + send_seconds
        say(
            f"send: {result.messages:,} tasks, {result.recipients:,} customers handed over in"
            f" {send_seconds:.2f} s ({waited[0]:.2f} s waiting for WeCom);"
            f" {result.api_calls} API calls (minimum {api_calls_min})"
        )

        # The naive way, on a sample of this campaign's recipients put back to targeted.
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT r.id, r.customer_id, g.wecom_userid, c.external_userid
                FROM (SELECT id, customer_id, guide_id,
                             row_number() OVER (ORDER BY customer_id) AS n
                      FROM campaigns_campaignrecipient
                      WHERE campaign_id = %s AND status = 'queued') r
                JOIN contacts_customer c ON c.id = r.customer_id
                JOIN contacts_guide g ON g.id = r.guide_id
                WHERE r.n %% %s = 0 ORDER BY r.n LIMIT %s
                """,
                [campaign.pk, max(1, result.recipients // naive_sample), naive_sample],
            )
            sample = cursor.fetchall()
        CampaignRecipient.objects.filter(pk__in=[row[0] for row in sample]).update(
            status="targeted"
        )
        naive_seconds = naive(sample, gateway, campaign)
        naive_seconds_scaled = naive_seconds / len(sample) * result.recipients
        say(
            f"naive: {len(sample):,} customers in {naive_seconds:.2f} s, scaled to"
            f" {result.recipients:,}: {naive_seconds_scaled:.1f} s"
        )
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)

    result_json = {
        "customers": customers,
        "guides": guides,
        "matched": reach["matched"],
        "recipients": result.recipients,
        "held": held,
        "held_by_reason": reach["held"],
        "holdout": reach["holdout"],
        "messages": result.messages,
        "seconds": round(seconds, 2),
        "prepare_seconds": round(prepare_seconds, 2),
        "send_seconds": round(send_seconds, 2),
        "send_wecom_seconds": round(waited[0], 2),
        "api_calls": result.api_calls,
        "api_calls_min": api_calls_min,
        "naive_sample": len(sample),
        "naive_seconds_scaled": round(naive_seconds_scaled, 1),
        "ratio_to_naive": round(naive_seconds_scaled / seconds, 1),
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_before_campaign_mb": peak_before_campaign,
    }
    print(json.dumps(result_json, ensure_ascii=False))  # noqa: T201


if __name__ == "__main__":
    main()
