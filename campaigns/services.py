"""Channel codes (渠道活码): created in WeCom, welcomed fast, tagged and enrolled on joining,
measured per code. Campaigns (群发) as the pages and the API change them: saved, their
reach computed, scheduled or sent now (campaigns.sending chooses the recipients and
hands them to WeCom)."""

import io
import logging
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import segno
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns import sending
from campaigns.models import Campaign, ChannelCode, WelcomeSend
from campaigns.sending import CampaignError
from contacts.models import Customer, Guide, Relationship
from scrm.wecom.gateway import WeComError

logger = logging.getLogger(__name__)

WELCOME_SECONDS = 20  # WeCom: a welcome_code is valid 20 s, once
WELCOME_LIMIT = 4000  # bytes of welcome text


class ChannelCodeError(ValueError):
    """A channel code that cannot be saved, with the reason an operator can act on."""


def _members(code: ChannelCode) -> list[Guide]:
    if code.distribution == ChannelCode.Distribution.BY_STORE:
        return list(Guide.objects.active().filter(store=code.store).order_by("wecom_userid"))
    return list(code.guides.filter(is_active=True).order_by("wecom_userid"))


def _wecom_users(code: ChannelCode) -> list[str]:
    """Who WeCom should hand the next adds to: every member (WeCom rotates among them),
    or, least loaded, the member with the fewest live customers now."""
    members = _members(code)
    if code.distribution != ChannelCode.Distribution.LEAST_LOADED or not members:
        return [guide.wecom_userid for guide in members]
    loads = dict(
        Relationship.objects.filter(guide__in=members, is_active=True)
        .values("guide_id")
        .annotate(n=Count("id"))
        .values_list("guide_id", "n")
    )
    lightest = min(members, key=lambda guide: (loads.get(guide.pk, 0), guide.wecom_userid))
    return [lightest.wecom_userid]


def channel_code_save(
    *, code: ChannelCode | None, fields: dict, guide_ids: list[int], tag_ids: list[int], gateway, by
) -> ChannelCode:
    """Create a channel code in WeCom (add_contact_way with a state of its own) or change
    it (update_contact_way). Refused with the reason when it has nobody to hand adds to;
    nothing is written when WeCom refuses."""
    from tagging.models import Tag

    if len((fields.get("welcome_text") or "").encode()) > WELCOME_LIMIT:
        raise ChannelCodeError(f"欢迎语最多 {WELCOME_LIMIT} 字节")
    if len(fields.get("welcome_attachments") or []) > 9:
        raise ChannelCodeError("欢迎语最多 9 个附件")
    if Tag.objects.filter(pk__in=tag_ids).exclude(source=Tag.Source.MANUAL).exists():
        raise ChannelCodeError("入群标签只能是手动标签（规则和系统标签由系统计算）")
    with transaction.atomic():
        created = code is None
        if created:
            code = ChannelCode(state=f"cc{secrets.token_hex(6)}", created_by=by)
        for name, value in fields.items():
            setattr(code, name, value)
        if code.distribution == ChannelCode.Distribution.BY_STORE and code.store_id is None:
            raise ChannelCodeError("「门店的导购」需要选择门店")
        code.save()
        code.guides.set(guide_ids)
        code.tags.set(tag_ids)
        users = _wecom_users(code)
        if not users:
            raise ChannelCodeError("活码至少要有一位在职导购接待")
        try:
            if created:
                way = gateway.add_contact_way(userids=users, state=code.state, remark=code.name)
                code.config_id, code.qr_code = way["config_id"], way["qr_code"]
            elif users != code.wecom_users:
                gateway.update_contact_way(config_id=code.config_id, userids=users)
        except WeComError as error:
            raise ChannelCodeError(
                f"企业微信拒绝了这个活码：{error.errcode} {error.errmsg}"
            ) from None
        code.wecom_users = users
        code.save(update_fields=["config_id", "qr_code", "wecom_users"])
    return code


def qr_png(code: ChannelCode) -> bytes:
    """The code's QR image as PNG: WeCom's contact-way link, encoded (print-ready at 8 px
    a module)."""
    buffer = io.BytesIO()
    segno.make(code.qr_code or code.state, error="m").save(buffer, kind="png", scale=8, border=2)
    return buffer.getvalue()


# -- the add: a fast welcome, then tags and enrolment ----------------------------------------


def _render(text: str, *, name: str, guide: Guide | None) -> str:
    store = guide.store.name if guide and guide.store else ""
    for variable, value in {
        "{称呼}": name or "您",
        "{客户姓名}": name,
        "{导购姓名}": guide.name if guide else "",
        "{门店}": store,
    }.items():
        text = text.replace(variable, value)
    return text


def _attachments(items: list[dict]) -> list[dict]:
    from sop.services import _attachments as convert  # one conversion for SOP and welcome

    class _Step:
        attachments = items

    return convert(_Step())


def welcome_send(*, event: dict, received_at: datetime, gateway) -> WelcomeSend | None:
    """Fast handler of add_external_contact: the code's welcome message through
    send_welcome_msg, once per welcome code, while it is valid (20 s from the add)."""
    welcome_code, state = event.get("WelcomeCode", ""), event.get("State", "")
    if not welcome_code or not state:
        return None
    code = ChannelCode.objects.filter(state=state, is_active=True).first()
    if code is None or not (code.welcome_text or code.welcome_attachments):
        return None
    send, created = WelcomeSend.objects.get_or_create(
        welcome_code=welcome_code,
        defaults={
            "code": code,
            "external_userid": event["ExternalUserID"],
            "userid": event["UserID"],
            "status": WelcomeSend.Status.SENDING,
            "error": "",
            "callback_at": received_at,
            "sent_at": timezone.now(),
            "latency_ms": 0,
        },
    )
    if not created:
        return send  # sent (or tried) already: a welcome code is used once
    if timezone.now() - received_at > timedelta(seconds=WELCOME_SECONDS):
        send.status, send.error = WelcomeSend.Status.EXPIRED, "回调处理超过 20 秒，欢迎语码已失效"
    else:
        guide = Guide.objects.select_related("store").filter(wecom_userid=event["UserID"]).first()
        name = ""
        try:
            name = gateway.external_contact_get(event["ExternalUserID"])["external_contact"].get(
                "name", ""
            )
        except WeComError:
            pass  # greet without the name rather than miss the 20 s
        try:
            gateway.send_welcome_msg(
                welcome_code=welcome_code,
                text=_render(code.welcome_text, name=name, guide=guide),
                attachments=_attachments(code.welcome_attachments),
            )
            send.status, send.error = WelcomeSend.Status.SENT, ""
        except WeComError as error:
            send.status, send.error = WelcomeSend.Status.FAILED, f"{error.errcode} {error.errmsg}"
    send.sent_at = timezone.now()
    send.latency_ms = int((send.sent_at - received_at).total_seconds() * 1000)
    send.save(update_fields=["status", "error", "sent_at", "latency_ms"])
    return send


def code_joined(*, event: dict, gateway) -> None:
    """Ordered handler of add_external_contact (after contacts stored the relationship):
    the code's tags, its SOP plan, and the next guide for least-loaded codes."""
    state = event.get("State", "")
    code = ChannelCode.objects.filter(state=state).first() if state else None
    if code is None:
        return
    customer = Customer.objects.filter(external_userid=event["ExternalUserID"]).first()
    guide = Guide.objects.filter(wecom_userid=event["UserID"]).first()
    if customer is None or guide is None:
        return
    from tagging.services import customer_tags_set

    with transaction.atomic():
        for tag in code.tags.all():
            customer_tags_set(tag=tag, customer_ids=[customer.pk], add=True, by=None)
        if code.sop_plan_id and code.sop_plan.is_active:
            from sop.scheduling import enroll

            enroll(
                plan=code.sop_plan,
                candidates="""SELECT %(customer)s::bigint AS customer_id, %(guide)s::bigint
                              AS guide_id, %(key)s AS trigger_key,
                              %(at)s::timestamptz AS triggered_at""",
                params={
                    "customer": customer.pk,
                    "guide": guide.pk,
                    "key": f"code:{code.pk}:{event['UserID']}:{event['CreateTime']}",
                    "at": datetime.fromtimestamp(int(event["CreateTime"]), tz=UTC),
                },
            )
    if code.distribution == ChannelCode.Distribution.LEAST_LOADED:
        users = _wecom_users(code)
        if users and users != code.wecom_users:
            gateway.update_contact_way(config_id=code.config_id, userids=users)
            ChannelCode.objects.filter(pk=code.pk).update(wecom_users=users)


# -- per code: adds, early deletions, members, conversion, revenue ------------------------------


def code_stats(
    *, code_ids: list[int] | None = None, now: datetime | None = None
) -> dict[int, dict]:
    """Per code, in people (one who added two guides through it is one add): adds, those
    gone within 7 days (no live relationship through it, the last ended within 7 days
    of their first add), net members, first-order conversion within 7 and 30 days of
    their first add (of those who had not bought before), net revenue of its members
    since they added (each order once), and the welcome's median latency."""
    now = now or timezone.now()
    codes = (
        ChannelCode.objects.all()
        if code_ids is None
        else ChannelCode.objects.filter(pk__in=code_ids)
    )
    states = {code.state: code.pk for code in codes}
    if not states:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH joined AS (  -- one row per person and code
                SELECT r.state, r.customer_id, min(r.added_at) AS added_at,
                       bool_or(r.is_active) AS is_active, max(r.ended_at) AS ended_at,
                       (min(r.added_at) AT TIME ZONE 'Asia/Shanghai')::date AS added_day
                FROM contacts_relationship r WHERE r.state = ANY(%(states)s)
                GROUP BY r.state, r.customer_id
            ), firsts AS (
                SELECT j.state, j.customer_id, min(d.day) AS first_day
                FROM joined j JOIN contacts_customerpurchaseday d ON d.customer_id = j.customer_id
                GROUP BY j.state, j.customer_id
            )
            SELECT j.state, count(*),
                   count(*) FILTER (WHERE NOT j.is_active
                                    AND j.ended_at < j.added_at + interval '7 days'),
                   count(*) FILTER (WHERE j.is_active),
                   count(*) FILTER (WHERE f.first_day IS NULL OR f.first_day >= j.added_day),
                   count(*) FILTER (WHERE f.first_day BETWEEN j.added_day AND j.added_day + 7),
                   count(*) FILTER (WHERE f.first_day BETWEEN j.added_day AND j.added_day + 30),
                   coalesce((SELECT sum(o.amount - o.refund_amount) FROM contacts_order o
                             JOIN joined m ON m.customer_id = o.customer_id AND m.state = j.state
                             WHERE o.status IN ('paid', 'partially_refunded')
                               AND o.paid_at >= m.added_at), 0)
            FROM joined j LEFT JOIN firsts f ON f.state = j.state AND f.customer_id = j.customer_id
            GROUP BY j.state
            """,
            {"states": list(states)},
        )
        rows = {state: row for state, *row in cursor.fetchall()}
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT code_id, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)
               FROM campaigns_welcomesend WHERE code_id = ANY(%s) AND status = 'sent'
               GROUP BY code_id""",
            [list(states.values())],
        )
        welcomes = {pk: (n, median) for pk, n, median in cursor.fetchall()}
    result = {}
    for state, pk in states.items():
        adds, early, members, eligible, in7, in30, revenue = rows.get(state, (0, 0, 0, 0, 0, 0, 0))
        cost = next(code.cost for code in codes if code.pk == pk)
        result[pk] = {
            "adds": adds,
            "deleted_within_7d": early,
            "members": members,
            "eligible": eligible,
            "converted_7d": in7,
            "converted_30d": in30,
            "rate_7d": in7 / eligible if eligible else None,
            "rate_30d": in30 / eligible if eligible else None,
            "revenue": Decimal(revenue),
            "cost_per_member": (cost / members).quantize(Decimal("0.01")) if members else None,
            "welcomes": welcomes.get(pk, (0, None))[0],
            "welcome_median_ms": welcomes.get(pk, (0, None))[1],
        }
    return result


# -- campaigns ----------------------------------------------------------------------------

EDITABLE = (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)
# Fields that decide who receives what: changing one makes the computed reach stale.
RECIPIENT_FIELDS = ("segment", "holdout_percent", "text_b")


def _not_editable() -> CampaignError:
    return CampaignError(_("活动已开始发送，不能再修改。"))


def campaign_save(*, campaign: Campaign | None, fields: dict, by) -> Campaign:
    """Create a draft, or change a draft or scheduled campaign (a conditional UPDATE: a
    campaign the worker has claimed for sending is refused). Changing who receives what
    clears `prepared_at`, so the reach is computed again before sending."""
    if campaign is None:
        return Campaign.objects.create(**fields, created_by=by)
    at = fields.get("schedule_at", campaign.schedule_at)
    if campaign.status == Campaign.Status.SCHEDULED and (at is None or at <= timezone.now()):
        raise CampaignError(_("待发送的活动需要一个将来的发送时间；或先取消定时。"))
    changes = dict(fields)
    if any(
        fields.get(name, getattr(campaign, name)) != getattr(campaign, name)
        for name in RECIPIENT_FIELDS
    ):
        changes["prepared_at"] = None
    updated = Campaign.objects.filter(pk=campaign.pk, status__in=EDITABLE).update(**changes)
    if not updated:
        raise _not_editable()
    campaign.refresh_from_db()
    return campaign


def _claim(campaign: Campaign, **changes) -> None:
    if not Campaign.objects.filter(pk=campaign.pk, status__in=EDITABLE).update(**changes):
        raise _not_editable()
    campaign.refresh_from_db()


def campaign_reach_compute(*, campaign: Campaign) -> dict:
    """campaign_prepare for the operator to see the reach before sending. A scheduled
    campaign keeps `prepared_at` empty: it is prepared again when it goes out."""
    reach = sending.campaign_prepare(campaign=campaign)
    if campaign.status == Campaign.Status.SCHEDULED:
        Campaign.objects.filter(pk=campaign.pk).update(prepared_at=None)
        campaign.prepared_at = None
    return reach


def campaign_schedule(
    *, campaign: Campaign, at: datetime | None, now: datetime | None = None
) -> dict:
    """Schedule the campaign for `at` (in the future). Its reach is computed now (refused
    with the reason when it cannot be sent) and again when it is sent: the daily and
    monthly limits are those of the day it goes out."""
    now = now or timezone.now()
    if at is None or at <= now:
        raise CampaignError(_("请选择一个将来的发送时间。"))
    with transaction.atomic():
        reach = sending.campaign_prepare(campaign=campaign, now=now)
        _refuse_no_reach(reach)
        _claim(campaign, status=Campaign.Status.SCHEDULED, schedule_at=at, prepared_at=None)
    return reach


def _refuse_no_reach(reach: dict) -> None:
    """A campaign that would reach no one is not sent (its cost would be booked for it)."""
    if not reach["reach"]:
        raise CampaignError(
            _(
                "没有可以群发的客户（人群匹配 %(matched)s 位，都被排除或在对照组）："
                "请调整人群条件后再发送。"
            )
            % {"matched": reach["matched"]}
        )


def campaign_send_now(*, campaign: Campaign, now: datetime | None = None) -> dict:
    """Prepare the campaign (the reach the page shows is what is sent) and hand it to the
    worker once committed. Marked scheduled for now, so the beat sends it even if this
    message were lost; sending twice is harmless (campaign_send claims the campaign)."""
    from campaigns.tasks import send_campaign

    now = now or timezone.now()
    with transaction.atomic():
        reach = sending.campaign_prepare(campaign=campaign, now=now)
        _refuse_no_reach(reach)
        _claim(campaign, status=Campaign.Status.SCHEDULED, schedule_at=now)
        campaign_id = campaign.pk
        transaction.on_commit(lambda: send_campaign.delay(campaign_id))
    return reach


def campaign_unschedule(*, campaign: Campaign) -> None:
    """A scheduled campaign back to draft (not sent until scheduled or sent again)."""
    if not Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.SCHEDULED).update(
        status=Campaign.Status.DRAFT
    ):
        raise CampaignError(_("只有待发送的活动可以取消定时。"))
    campaign.refresh_from_db()
