"""Reads for the 活动 pages and API: every campaign's numbers in one query (the list),
a campaign's guides and what they did, a channel code's adds by day and its recent
welcome messages."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from campaigns.models import Campaign, CampaignMessage, CampaignRecipient, ChannelCode, WelcomeSend
from contacts.models import Customer, Guide, Relationship
from sop.scheduling import SHANGHAI

# Recipients that went into an add_msg_template task (WeCom refusing some at once marks
# them not_friend): "handed to guides".
HANDED = ("queued", "sent", "not_friend", "over_limit")


@dataclass
class CampaignStats:
    """A campaign's funnel and what it earned. `buyers` and `revenue` follow
    campaigns.sending.attribution (last touch within the attribution window)."""

    matched: int = 0
    reach: int = 0  # matched, neither held back nor holdout
    held: int = 0
    holdout: int = 0
    handed: int = 0
    sent: int = 0  # received: the guide sent it and WeCom delivered it
    not_friend: int = 0
    over_limit: int = 0
    buyers: int = 0
    revenue: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)

    @property
    def roi(self) -> float | None:
        """None until someone received it (no result yet, not a loss of 100 %)."""
        if not self.cost or not self.sent:
            return None
        return float((self.revenue - self.cost) / self.cost)

    def as_dict(self) -> dict:
        return {
            "matched": self.matched,
            "reach": self.reach,
            "held": self.held,
            "holdout": self.holdout,
            "handed": self.handed,
            "sent": self.sent,
            "not_friend": self.not_friend,
            "over_limit": self.over_limit,
            "buyers": self.buyers,
            "revenue": self.revenue,
            "roi": self.roi,
        }


def campaign_stats(campaigns: list[Campaign]) -> dict[int, CampaignStats]:
    """Per campaign: recipients by status, and the buyers and net revenue credited to it
    by last touch, in one query whatever the number of campaigns. The credit is
    campaigns.sending.attribution's rule, for many campaigns at once: orders paid within
    `attribution_days` after a customer received the campaign, unless another campaign
    was received or an SOP task done in between. Relies on recipient_guide_idx
    (campaign_id first) and the order table's customer index."""
    result = {campaign.pk: CampaignStats(cost=campaign.cost) for campaign in campaigns}
    if not result:
        return result
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH counts AS (
                SELECT campaign_id, count(*) AS matched,
                       count(*) FILTER (WHERE status NOT IN ('held', 'holdout')) AS reach,
                       count(*) FILTER (WHERE status = 'held') AS held,
                       count(*) FILTER (WHERE status = 'holdout') AS holdout,
                       count(*) FILTER (WHERE status = ANY(%(handed)s)) AS handed,
                       count(*) FILTER (WHERE status = 'sent') AS sent,
                       count(*) FILTER (WHERE status = 'not_friend') AS not_friend,
                       count(*) FILTER (WHERE status = 'over_limit') AS over_limit
                FROM campaigns_campaignrecipient WHERE campaign_id = ANY(%(ids)s)
                GROUP BY campaign_id
            ), orders AS (
                SELECT r.campaign_id, r.customer_id, o.id, r.sent_at, o.paid_at,
                       o.amount - o.refund_amount AS net
                FROM campaigns_campaignrecipient r
                JOIN campaigns_campaign c ON c.id = r.campaign_id
                JOIN contacts_order o ON o.customer_id = r.customer_id
                WHERE r.campaign_id = ANY(%(ids)s) AND r.status = 'sent'
                  AND o.status IN ('paid', 'partially_refunded')
                  AND o.paid_at > r.sent_at
                  AND o.paid_at <= r.sent_at + c.attribution_days * interval '1 day'
            ), credited AS (
                SELECT o.campaign_id, count(DISTINCT o.customer_id) AS buyers,
                       sum(o.net) AS revenue
                FROM orders o
                WHERE NOT EXISTS (
                    SELECT 1 FROM campaigns_campaignrecipient x
                    WHERE x.customer_id = o.customer_id AND x.status = 'sent'
                      AND x.campaign_id <> o.campaign_id
                      AND x.sent_at > o.sent_at AND x.sent_at < o.paid_at)
                  AND NOT EXISTS (
                    SELECT 1 FROM sop_touchpoint t WHERE t.customer_id = o.customer_id
                      AND t.status = 'done' AND t.done_at > o.sent_at AND t.done_at < o.paid_at)
                GROUP BY o.campaign_id
            )
            SELECT c.campaign_id, c.matched, c.reach, c.held, c.holdout, c.handed, c.sent,
                   c.not_friend, c.over_limit, coalesce(k.buyers, 0), coalesce(k.revenue, 0)
            FROM counts c LEFT JOIN credited k ON k.campaign_id = c.campaign_id
            """,
            {"ids": list(result), "handed": list(HANDED)},
        )
        for pk, *numbers in cursor.fetchall():
            stats = result[pk]
            (
                stats.matched,
                stats.reach,
                stats.held,
                stats.holdout,
                stats.handed,
                stats.sent,
                stats.not_friend,
                stats.over_limit,
                stats.buyers,
                revenue,
            ) = numbers
            stats.revenue = Decimal(revenue)
    return result


@dataclass
class GuideProgress:
    """One guide's part of a sent campaign: their tasks in WeCom, whether they confirmed
    (sent) them, the reminders WeCom sent them, and their customers' outcome."""

    guide_id: int
    name: str
    userid: str
    tasks: int = 0
    confirmed: int = 0
    failed: int = 0
    unknown: int = 0
    reminders: int = 0
    handed: int = 0
    sent: int = 0
    waiting: int = 0  # queued: the guide has not sent it yet
    errors: list[str] = field(default_factory=list)

    @property
    def is_done(self) -> bool:
        return self.tasks > 0 and self.confirmed == self.tasks


def campaign_guides(campaign: Campaign) -> list[GuideProgress]:
    """Each guide of the campaign with their tasks and customers: two queries. Guides who
    have not confirmed come first (the operator follows them up)."""
    messages = (
        CampaignMessage.objects.filter(campaign=campaign)
        .values("guide_id", "guide__name", "guide__wecom_userid")
        .annotate(
            tasks=Count("id"),
            confirmed=Count("id", filter=Q(status=CampaignMessage.Status.CONFIRMED)),
            failed=Count("id", filter=Q(status=CampaignMessage.Status.FAILED)),
            unknown=Count("id", filter=Q(status=CampaignMessage.Status.UNKNOWN)),
            reminders=Sum("reminders"),
        )
    )
    progress: dict[int, GuideProgress] = {}
    for row in messages:
        progress[row["guide_id"]] = GuideProgress(
            guide_id=row["guide_id"],
            name=row["guide__name"],
            userid=row["guide__wecom_userid"],
            tasks=row["tasks"],
            confirmed=row["confirmed"],
            failed=row["failed"],
            unknown=row["unknown"],
            reminders=row["reminders"] or 0,
        )
    recipients = (
        CampaignRecipient.objects.filter(campaign=campaign, status__in=HANDED)
        .values("guide_id", "guide__name", "guide__wecom_userid")
        .annotate(
            handed=Count("id"),
            sent=Count("id", filter=Q(status="sent")),
            waiting=Count("id", filter=Q(status="queued")),
        )
    )
    for row in recipients:
        guide = progress.setdefault(
            row["guide_id"],
            GuideProgress(
                guide_id=row["guide_id"], name=row["guide__name"], userid=row["guide__wecom_userid"]
            ),
        )
        guide.handed, guide.sent, guide.waiting = row["handed"], row["sent"], row["waiting"]
    return sorted(progress.values(), key=lambda g: (g.is_done, g.userid))


def code_adds_by_day(
    code: ChannelCode, *, days: int = 30, now: datetime | None = None
) -> list[tuple[date, int, int]]:
    """(Shanghai day, adds, of them still members) for each of the last `days` days,
    today included, zero days too. One query on contacts_relationship's state index."""
    today = timezone.localtime(now or timezone.now(), SHANGHAI).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, datetime.min.time(), tzinfo=SHANGHAI)
    rows = (
        Relationship.objects.filter(state=code.state, added_at__gte=start)
        .annotate(day=TruncDate("added_at", tzinfo=SHANGHAI))
        .values("day")
        .annotate(adds=Count("id"), members=Count("id", filter=Q(is_active=True)))
    )
    by_day = {row["day"]: (row["adds"], row["members"]) for row in rows}
    return [
        (day, *by_day.get(day, (0, 0))) for day in (first + timedelta(days=n) for n in range(days))
    ]


def recent_welcomes(code: ChannelCode, *, limit: int = 20) -> list[WelcomeSend]:
    """The code's latest welcome messages, each with `guide_name` and `customer` (the
    customer row, once synced; None before): three queries."""
    welcomes = list(code.welcomes.order_by("-sent_at", "-id")[:limit])
    names = dict(
        Guide.objects.filter(wecom_userid__in={w.userid for w in welcomes}).values_list(
            "wecom_userid", "name"
        )
    )
    customers = {
        customer.external_userid: customer
        for customer in Customer.objects.filter(
            external_userid__in={w.external_userid for w in welcomes}
        ).only("id", "name", "external_userid")
    }
    for welcome in welcomes:
        welcome.guide_name = names.get(welcome.userid, "")
        welcome.customer = customers.get(welcome.external_userid)
    return welcomes


def campaign_attribution(campaign: Campaign) -> dict:
    """campaigns.sending.attribution, or nothing yet for a campaign not sent (attribution
    needs its send time)."""
    from campaigns.sending import attribution

    if campaign.sent_at is not None:
        return attribution(campaign=campaign)
    return {
        "rule": "",
        "received": 0,
        "buyers": 0,
        "revenue": 0.0,
        "conversion": None,
        "targeted_conversion": None,
        "holdout": 0,
        "holdout_conversion": None,
        "uplift": None,
        "roi": None,
        "variants": {},
    }


def codes_listed():
    """Channel codes with what the list shows about them (store, guides: two queries)."""
    return ChannelCode.objects.select_related("store", "sop_plan").prefetch_related("guides")


def campaigns_listed():
    return Campaign.objects.all()


CUSTOMER_CAMPAIGNS_SHOWN = 200


def customer_campaigns(customer: Customer) -> list[CampaignRecipient]:
    """The campaigns a customer was chosen for, latest first (the recipients' customer
    index), with what happened: sent, held back and why, holdout, waiting."""
    return list(
        CampaignRecipient.objects.filter(customer=customer)
        .select_related("campaign", "guide")
        .order_by("-campaign__created_at", "-campaign_id")[:CUSTOMER_CAMPAIGNS_SHOWN]
    )
