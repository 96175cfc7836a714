"""Mass-message campaigns (群发): who is reached, handing the sends to WeCom once, results,
reminders, and orders attributed to them.

WeCom's way: `add_msg_template` creates a task per guide; nothing reaches a customer
until the guide confirms it in WeCom; the group-message APIs tell what happened. So a
campaign is prepared (recipients with their guide and variant, those WeCom's limits or
the brand's contact policy would hold back marked with the reason), handed over (one
task per guide and variant, ≤ 10,000 customers each) and then followed up.
"""

import calendar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from operator import itemgetter

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.models import Campaign, CampaignMessage, CampaignRecipient
from scrm.wecom.gateway import WeComError
from sop.models import ContactPolicy
from sop.scheduling import SHANGHAI, _today, local_midnight

RECIPIENTS_PER_CALL = 10_000  # add_msg_template: external_userid ≤ 10,000
REMIND_AFTER = timedelta(hours=1)
MAX_REMINDERS = 3  # remind_groupmsg_send: ≤ 3 a day
SEND_LOCK = 7_320_001  # pg_try_advisory_lock(SEND_LOCK, campaign id): one sender a campaign


class CampaignError(ValueError):
    """A campaign that cannot be prepared or sent, with the reason."""


class CampaignBusy(Exception):  # noqa: N818 - a state, not a failure
    """Another run is sending the campaign (or the session of one whose worker died has
    not ended yet): transient, try again later."""


def month_quota(now: datetime) -> int:
    """WeCom's current rule: a customer (and a customer group) receives at most as many
    mass messages a month as the month has days (Beijing time)."""
    local = now.astimezone(SHANGHAI)
    return calendar.monthrange(local.year, local.month)[1]


def mass_text_variables(*texts: str) -> list[str]:
    """The welcome's variables ({称呼} …) in a mass message's texts: WeCom sends one text
    to every customer of a guide (add_msg_template), so none of them would be filled."""
    from campaigns.forms import WELCOME_VARIABLES

    return [name for name in WELCOME_VARIABLES if any(name in text for text in texts)]


def mass_text_refusal(variables: list[str]) -> str:
    return _(
        "群发是同一段文字发给每位客户，%(variables)s 不会换成各人的内容：请改成通用的说法。"
    ) % {"variables": _("、").join(variables)}


def campaign_prepare(*, campaign: Campaign, now: datetime | None = None) -> dict:
    """Choose the recipients: customers matching the segment with a live guide (the one
    most recently added, as WeCom sends through the last member who chatted), their
    variant (a stable hash of campaign and customer), and who is held back and why.
    Returns the reach: counts by status and reason, and by guide."""
    from tagging.evaluation import resolve_ids
    from tagging.rules import RuleError, compile_condition

    now = now or timezone.now()
    try:
        compiled = compile_condition(campaign.segment, resolve=resolve_ids)
    except RuleError as error:
        raise CampaignError(f"人群条件：{error}") from None
    if not (campaign.text or campaign.attachments):
        raise CampaignError("内容不能为空：请填写文字或添加附件")
    if unfilled := mass_text_variables(campaign.text, campaign.text_b):
        raise CampaignError(mass_text_refusal(unfilled))
    if not 0 <= campaign.holdout_percent <= 50:
        raise CampaignError("对照组比例应在 0 到 50 之间")
    policy = ContactPolicy.current()
    today = _today(now)
    params = {
        **compiled.params,
        "today": today,
        "campaign": campaign.pk,
        "holdout": campaign.holdout_percent,
        "ab": bool(campaign.text_b),
        "day_start": local_midnight(today),
        "month_start": local_midnight(today.replace(day=1)),
        "quota": month_quota(now),
        "max_day": policy.max_per_day,
        "complaint_tag": policy.complaint_tag_id,
        "complaint_since": now - timedelta(days=policy.complaint_days),
    }
    with transaction.atomic(), connection.cursor() as cursor:
        # Locked, so that a send claiming the campaign waits for these recipients, and
        # recipients are never chosen again once a send has claimed it.
        status = Campaign.objects.select_for_update().values_list("status", flat=True)
        if status.get(pk=campaign.pk) not in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED):
            raise CampaignError("已发送的活动不能重新圈人")
        cursor.execute(
            "DELETE FROM campaigns_campaignrecipient WHERE campaign_id = %s", [campaign.pk]
        )
        # Set-based: the latest guide of every chosen customer in one pass over their
        # relationships, and what customers received this month and today in one pass
        # over this month's campaigns' recipients (by campaign: rows written together),
        # not subqueries per customer over their whole history. JIT compilation costs
        # more than it saves on this statement.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(
            f"""
            WITH chosen AS MATERIALIZED (
                SELECT f.customer_id,
                       abs(hashtext(%(campaign)s::text || ':' || f.customer_id::text)) AS h
                FROM contacts_customerfacts f
                JOIN contacts_customer c ON c.id = f.customer_id
                WHERE c.external_userid IS NOT NULL AND f.is_member AND ({compiled.sql})
            ), latest AS (
                SELECT DISTINCT ON (r.customer_id) r.customer_id, r.guide_id
                FROM contacts_relationship r JOIN chosen ch ON ch.customer_id = r.customer_id
                WHERE r.is_active
                ORDER BY r.customer_id, r.added_at DESC, r.id DESC
            ), placed AS (
                SELECT ch.customer_id, l.guide_id,
                       CASE WHEN ch.h %% 100 < %(holdout)s THEN 'holdout'
                            WHEN %(ab)s AND (ch.h / 100) %% 2 = 1 THEN 'b' ELSE 'a' END AS variant
                FROM chosen ch JOIN latest l ON l.customer_id = ch.customer_id
            ), received AS (
                SELECT o.customer_id, count(*) AS month,
                       count(*) FILTER (WHERE oc.sent_at >= %(day_start)s) AS today
                FROM campaigns_campaign oc
                JOIN campaigns_campaignrecipient o ON o.campaign_id = oc.id
                WHERE oc.sent_at >= %(month_start)s AND o.status IN ('queued', 'sent')
                GROUP BY o.customer_id
            ), touched AS (
                SELECT t.customer_id, count(*) AS today FROM sop_touchpoint t
                WHERE t.task_at >= %(day_start)s
                  AND t.customer_id IN (SELECT customer_id FROM chosen)
                GROUP BY t.customer_id
            )
            INSERT INTO campaigns_campaignrecipient (campaign_id, customer_id, guide_id, variant,
                                                     status, reason)
            SELECT %(campaign)s, p.customer_id, p.guide_id, p.variant,
                   CASE WHEN p.variant = 'holdout' THEN 'holdout'
                        WHEN r.reason IS NOT NULL THEN 'held' ELSE 'targeted' END,
                   coalesce(CASE WHEN p.variant = 'holdout' THEN '' ELSE r.reason END, '')
            FROM placed p
            LEFT JOIN received rc ON rc.customer_id = p.customer_id
            LEFT JOIN touched tc ON tc.customer_id = p.customer_id
            CROSS JOIN LATERAL (SELECT CASE
                WHEN EXISTS (SELECT 1 FROM sop_optout x WHERE x.customer_id = p.customer_id)
                    THEN 'opted_out'
                WHEN %(complaint_tag)s::bigint IS NOT NULL AND EXISTS (
                    SELECT 1 FROM tagging_customertag ct WHERE ct.customer_id = p.customer_id
                      AND ct.tag_id = %(complaint_tag)s::bigint
                      AND ct.added_at >= %(complaint_since)s) THEN 'complaint'
                WHEN coalesce(rc.month, 0) >= %(quota)s THEN 'wecom_limit'
                WHEN coalesce(tc.today, 0) + coalesce(rc.today, 0) >= %(max_day)s
                    THEN 'daily_cap'
                END AS reason) r
            """,
            params,
        )
        campaign.prepared_at = now
        campaign.save(update_fields=["prepared_at"])
    return campaign_reach(campaign=campaign)


def campaign_reach(*, campaign: Campaign) -> dict:
    """Targeted, held back by reason, holdout; and per guide."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT status, reason, count(*) FROM campaigns_campaignrecipient
               WHERE campaign_id = %s GROUP BY status, reason""",
            [campaign.pk],
        )
        totals = cursor.fetchall()
        cursor.execute(
            """SELECT g.wecom_userid, g.name, count(*) FILTER (WHERE r.status <> 'held'
                        AND r.status <> 'holdout'),
                      count(*) FILTER (WHERE r.status = 'held')
               FROM campaigns_campaignrecipient r JOIN contacts_guide g ON g.id = r.guide_id
               WHERE r.campaign_id = %s GROUP BY g.id ORDER BY 3 DESC, 1""",
            [campaign.pk],
        )
        guides = [
            {"userid": userid, "name": name, "reach": reach, "held": held}
            for userid, name, reach, held in cursor.fetchall()
        ]
    held = {reason: n for status, reason, n in totals if status == "held"}
    return {
        "matched": sum(n for _, _, n in totals),
        "reach": sum(n for status, _, n in totals if status not in ("held", "holdout")),
        "held": held,
        "holdout": sum(n for status, _, n in totals if status == "holdout"),
        "guides": guides,
    }


@dataclass
class SendResult:
    messages: int = 0
    recipients: int = 0
    failed: int = 0
    unknown: int = 0
    api_calls: int = 0
    skipped: bool = False
    errors: list[str] = field(default_factory=list)


def campaign_send(*, campaign_id: int, gateway, now: datetime | None = None) -> SendResult:
    """Hand the campaign to WeCom, once.

    One run at a time: it holds the campaign's advisory lock, which belongs to its
    database session, so a worker killed mid-send releases it; CampaignBusy while another
    run holds it. The campaign is claimed from draft / scheduled to sending by a
    conditional UPDATE (a run that finds it sent returns skipped); each task (guide,
    variant, part of 10,000) is a CampaignMessage committed as `sending` before its
    add_msg_template. A run that finds one still `sending` holds the lock, so the run
    that claimed it died during its call: WeCom may have the task, so it is marked unknown
    and never sent again; the rest is handed over."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [SEND_LOCK, campaign_id])
        if not cursor.fetchone()[0]:
            raise CampaignBusy(f"campaign {campaign_id} is being sent by another run")
    try:
        return _send(campaign_id=campaign_id, gateway=gateway, now=now or timezone.now())
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [SEND_LOCK, campaign_id])


def _send(*, campaign_id: int, gateway, now: datetime) -> SendResult:
    result = SendResult()
    campaign = Campaign.objects.get(pk=campaign_id)
    if campaign.status in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED) and (
        campaign.prepared_at is None
    ):
        campaign_prepare(campaign=campaign, now=now)
    claimed = Campaign.objects.filter(
        pk=campaign_id, status__in=[Campaign.Status.DRAFT, Campaign.Status.SCHEDULED]
    ).update(status=Campaign.Status.SENDING, sent_at=now)
    campaign.refresh_from_db()
    if not claimed and campaign.status != Campaign.Status.SENDING:
        result.skipped = True
        return result
    result.unknown = CampaignMessage.objects.filter(
        campaign_id=campaign_id, status=CampaignMessage.Status.SENDING
    ).update(
        status=CampaignMessage.Status.UNKNOWN, error="发送时进程中断，请在企业微信群发助手中核对"
    )
    calls_before = gateway.api_calls
    attachments = _attachments(campaign.attachments)
    # Every recipient to send to, handed over or not, in the order of the tasks (guide,
    # variant, then customer), so that every run cuts the same parts of 10,000; streamed
    # from a server-side cursor, one statement for the whole campaign.
    rows = connection.chunked_cursor()
    rows.execute(
        """
        SELECT r.guide_id, r.variant, r.id, c.external_userid, g.wecom_userid
        FROM campaigns_campaignrecipient r
        JOIN contacts_customer c ON c.id = r.customer_id
        JOIN contacts_guide g ON g.id = r.guide_id
        WHERE r.campaign_id = %s AND r.status NOT IN ('held', 'holdout')
        ORDER BY r.guide_id, r.variant, r.customer_id
        """,
        [campaign_id],
    )
    # What a call's answer changes is written in the transaction that claims the next
    # task (one commit per task): each claim is still committed before its call.
    answered: tuple | None = None
    try:
        for (guide_id, variant), group in groupby(rows, key=itemgetter(0, 1)):
            group = list(group)
            for part, start in enumerate(range(0, len(group), RECIPIENTS_PER_CALL)):
                chunk = group[start : start + RECIPIENTS_PER_CALL]
                with transaction.atomic(), connection.cursor() as cursor:
                    if answered:
                        _record_answer(cursor, *answered)
                        answered = None
                    cursor.execute(
                        """
                        INSERT INTO campaigns_campaignmessage (campaign_id, guide_id, variant,
                            part, status, msgid, recipients, reminders, error, created_at)
                        VALUES (%s, %s, %s, %s, 'sending', '', %s, 0, '', %s)
                        ON CONFLICT (campaign_id, guide_id, variant, part) DO NOTHING
                        RETURNING id
                        """,
                        [campaign_id, guide_id, variant, part, len(chunk), timezone.now()],
                    )
                    claim = cursor.fetchone()
                if claim is None:
                    continue  # handed over (or cut off) by an earlier run
                sender = chunk[0][4]
                try:
                    sent = gateway.add_msg_template(
                        sender=sender,
                        external_userids=[row[3] for row in chunk],
                        text=campaign.text_b if variant == "b" else campaign.text,
                        attachments=attachments,
                    )
                except WeComError as error:
                    answered = (claim[0], None, str(error)[:300], [], [])
                    result.failed += 1
                    result.errors.append(f"{sender}: {error.errcode} {error.errmsg}")
                    continue
                refused = set(sent["fail_list"])
                queued = [row[2] for row in chunk if row[3] not in refused]
                not_friends = [row[2] for row in chunk if row[3] in refused]
                answered = (claim[0], sent["msgid"], "", queued, not_friends)
                result.messages += 1
                result.recipients += len(queued)
    finally:
        rows.close()
        if answered:
            with transaction.atomic(), connection.cursor() as cursor:
                _record_answer(cursor, *answered)
    Campaign.objects.filter(pk=campaign_id).update(status=Campaign.Status.SENT)
    result.api_calls = gateway.api_calls - calls_before
    return result


def _record_answer(
    cursor, message_id: int, msgid: str | None, error: str, queued: list[int], refused: list[int]
) -> None:
    """A task's answer from WeCom: created with its msgid (its customers queued, those
    WeCom refused no longer friends), or failed with the error."""
    if msgid is None:
        cursor.execute(
            "UPDATE campaigns_campaignmessage SET status = 'failed', error = %s WHERE id = %s",
            [error, message_id],
        )
        return
    cursor.execute(
        "UPDATE campaigns_campaignmessage SET status = 'created', msgid = %s WHERE id = %s",
        [msgid, message_id],
    )
    cursor.execute(
        """
        UPDATE campaigns_campaignrecipient
        SET status = CASE WHEN id = ANY(%(refused)s) THEN 'not_friend' ELSE 'queued' END
        WHERE id = ANY(%(ids)s)
        """,
        {"refused": refused, "ids": queued + refused},
    )


def _attachments(items: list[dict]) -> list[dict]:
    from campaigns.services import _attachments as convert

    return convert(items)


def campaign_results(*, campaign: Campaign, gateway, now: datetime | None = None) -> dict:
    """What WeCom says happened: which guides confirmed, and per customer sent, not a
    friend any more, or over WeCom's limit. Reminds guides who have not confirmed after an
    hour (at most three times). Returns counts."""
    now = now or timezone.now()
    counts = {"confirmed": 0, "reminded": 0, "sent": 0, "not_friend": 0, "over_limit": 0}
    messages = campaign.messages.filter(
        status__in=[CampaignMessage.Status.CREATED, CampaignMessage.Status.CONFIRMED]
    ).select_related("guide")
    for message in messages:
        rows = gateway.groupmsg_send_result(msgid=message.msgid, userid=message.guide.wecom_userid)
        by_customer = {row.get("external_userid"): row for row in rows}
        if any(row.get("status") for row in rows) and message.status != "confirmed":
            message.status, message.confirmed_at = CampaignMessage.Status.CONFIRMED, now
            message.save(update_fields=["status", "confirmed_at"])
            counts["confirmed"] += 1
        recipients = CampaignRecipient.objects.filter(
            campaign=campaign, guide=message.guide, variant=message.variant, status="queued"
        ).select_related("customer")
        for recipient in recipients:
            row = by_customer.get(recipient.customer.external_userid)
            status = (row or {}).get("status", 0)
            if status == 1:
                recipient.status = "sent"
                recipient.sent_at = datetime.fromtimestamp(row.get("send_time", 0), tz=SHANGHAI)
            elif status in (2, 3):
                recipient.status = "not_friend" if status == 2 else "over_limit"
            else:
                continue
            recipient.save(update_fields=["status", "sent_at"])
            counts[recipient.status] += 1
        if (
            message.status == CampaignMessage.Status.CREATED
            and now - message.created_at >= REMIND_AFTER * (message.reminders + 1)
            and message.reminders < MAX_REMINDERS
        ):
            try:
                gateway.call(
                    "post", "externalcontact/remind_groupmsg_send", data={"msgid": message.msgid}
                )
                message.reminders += 1
                message.save(update_fields=["reminders"])
                counts["reminded"] += 1
            except WeComError:
                pass  # WeCom's own limit reached: the page still shows who has not sent
    return counts


def attribution(*, campaign: Campaign) -> dict:
    """Orders within the attribution window after a customer received the campaign,
    credited by last touch (the latest of their SOP tasks done, campaign messages received
    and welcome messages before the order); and the incremental effect: the share of the
    targeted (all but the holdout, received or not) who bought in the window after the
    handover, less the holdout's in the same window."""
    days = campaign.attribution_days
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH sent AS (
                SELECT customer_id, sent_at, variant FROM campaigns_campaignrecipient
                WHERE campaign_id = %(campaign)s AND status = 'sent'
            ), orders AS (
                SELECT s.customer_id, o.id, o.paid_at, o.amount - o.refund_amount AS net,
                       s.sent_at, s.variant
                FROM sent s JOIN contacts_order o ON o.customer_id = s.customer_id
                WHERE o.status IN ('paid', 'partially_refunded')
                  AND o.paid_at > s.sent_at
                  AND o.paid_at <= s.sent_at + %(days)s * interval '1 day'
            ), later_touch AS (
                -- another touch after ours and before the order takes the credit
                SELECT o.id FROM orders o WHERE EXISTS (
                    SELECT 1 FROM campaigns_campaignrecipient r
                    WHERE r.customer_id = o.customer_id AND r.status = 'sent'
                      AND r.campaign_id <> %(campaign)s
                      AND r.sent_at > o.sent_at AND r.sent_at < o.paid_at)
                   OR EXISTS (
                    SELECT 1 FROM sop_touchpoint t WHERE t.customer_id = o.customer_id
                      AND t.status = 'done' AND t.done_at > o.sent_at AND t.done_at < o.paid_at)
            )
            SELECT v.variant, (SELECT count(*) FROM sent s WHERE s.variant = v.variant),
                   count(DISTINCT o.customer_id) FILTER (WHERE o.id IS NOT NULL AND l.id IS NULL),
                   coalesce(sum(o.net) FILTER (WHERE l.id IS NULL), 0),
                   count(DISTINCT o.customer_id)
            FROM (SELECT DISTINCT variant FROM sent) v
            LEFT JOIN orders o ON o.variant = v.variant LEFT JOIN later_touch l ON l.id = o.id
            GROUP BY v.variant
            """,
            {"campaign": campaign.pk, "days": days},
        )
        # by the content received (A, and B when the campaign has one): a customer is in one
        rows = cursor.fetchall()
        by_variant = {
            variant: {
                "received": received,
                "buyers": buyers,
                "revenue": float(revenue),
                "conversion": any_buyers / received if received else None,
            }
            for variant, received, buyers, revenue, any_buyers in rows
        }
        sent, buyers, revenue, any_buyers = (sum(row[i] for row in rows) for i in range(1, 5))
        # The experiment: everyone the segment chose, the holdout apart (whether they
        # then received it, were held back or are still waiting: the holdout was drawn
        # before those checks), against the holdout, in one window from the handover.
        cursor.execute(
            """
            SELECT r.status = 'holdout', count(*), count(*) FILTER (WHERE EXISTS (
                SELECT 1 FROM contacts_order o WHERE o.customer_id = r.customer_id
                  AND o.status IN ('paid', 'partially_refunded')
                  AND o.paid_at > %(at)s::timestamptz
                  AND o.paid_at <= %(at)s::timestamptz + %(days)s * interval '1 day'))
            FROM campaigns_campaignrecipient r
            WHERE r.campaign_id = %(campaign)s
            GROUP BY 1
            """,
            {"campaign": campaign.pk, "days": days, "at": campaign.sent_at},
        )
        groups = {is_holdout: (n, bought) for is_holdout, n, bought in cursor.fetchall()}
    holdout, holdout_buyers = groups.get(True, (0, 0))
    targeted, targeted_buyers = groups.get(False, (0, 0))
    # The rates wait for the first message received: before it there is nothing to
    # compare the holdout with.
    rate = any_buyers / sent if sent else None
    targeted_rate = targeted_buyers / targeted if targeted and sent else None
    holdout_rate = holdout_buyers / holdout if holdout and sent else None
    cost = float(campaign.cost)
    return {
        "rule": f"末次触达归因：收到群发后 {days} 天内的订单，期间没有更晚的触达",
        "received": sent,
        "buyers": buyers,
        "revenue": float(revenue),
        "conversion": rate,
        "targeted_conversion": targeted_rate,
        "holdout": holdout,
        "holdout_conversion": holdout_rate,
        "uplift": (targeted_rate - holdout_rate)
        if targeted_rate is not None and holdout_rate is not None
        else None,
        "roi": ((float(revenue) - cost) / cost) if cost and sent else None,
        "variants": {name: by_variant.get(name) for name in ("a", "b")} if campaign.text_b else {},
    }
