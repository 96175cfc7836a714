"""Campaigns against the emulator: reach with held-back reasons, handed to WeCom once per
guide even when sent twice, results after guides confirm, and last-touch attribution
against the holdout on hand-built orders."""

from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns import sending
from campaigns.models import Campaign, CampaignMessage, CampaignRecipient
from campaigns.sending import attribution, campaign_prepare, campaign_results, campaign_send
from contacts.models import Relationship
from scrm.wecom.gateway import WeComGateway
from sop import triggers
from sop.models import ContactPolicy, OptOut, SopPlan, SopStep, Touchpoint
from sop.scheduling import SHANGHAI
from tagging.models import CustomerTag, Tag, TagGroup
from tests.contacts.factories import OrderFactory

pytestmark = pytest.mark.django_db


def _campaign(**extra) -> Campaign:
    return Campaign.objects.create(
        name="秋冬上新",
        segment={"fact": "guide", "op": "any_of", "value": ["guide0001", "guide0002"]},
        text="秋冬家居服上新了",
        **extra,
    )


def _latest_guide(customer_id: int) -> str:
    return (
        Relationship.objects.filter(customer_id=customer_id, is_active=True)
        .order_by("-added_at", "-id")
        .values_list("guide__wecom_userid", flat=True)
        .first()
    )


def test_reach_and_held_back_reasons(emulator):
    campaign = _campaign(holdout_percent=10)
    followed = set(
        Relationship.objects.filter(
            guide__wecom_userid__in=["guide0001", "guide0002"], is_active=True
        ).values_list("customer_id", flat=True)
    )
    opted = sorted(followed)[0]
    OptOut.objects.create(customer_id=opted)
    reach = campaign_prepare(campaign=campaign)
    assert reach["matched"] == len(followed)
    assert (
        reach["held"] == {"opted_out": 1}
        or CampaignRecipient.objects.get(customer_id=opted).variant == "holdout"
    )
    recipients = CampaignRecipient.objects.filter(campaign=campaign)
    # each customer goes to the guide who added them last (WeCom's "last chatted")
    for recipient in recipients:
        assert recipient.guide.wecom_userid == _latest_guide(recipient.customer_id)
    holdout = recipients.filter(variant="holdout").count()
    assert 0 < holdout < len(followed) * 0.3
    assert reach["reach"] + sum(reach["held"].values()) + reach["holdout"] == len(followed)
    # stable: preparing again gives everyone the same variant
    before = dict(recipients.values_list("customer_id", "variant"))
    campaign_prepare(campaign=campaign)
    assert (
        dict(
            CampaignRecipient.objects.filter(campaign=campaign).values_list(
                "customer_id", "variant"
            )
        )
        == before
    )


def test_wecom_limits_and_the_contact_policy_hold_back_by_reason(emulator):
    """On hand-built histories, at noon on 20 November (30 days: WeCom's monthly quota is
    30) with the brand's policy of one touch a day and 30 quiet days after a complaint."""
    now = datetime(2026, 11, 20, 12, 0, tzinfo=SHANGHAI)
    complaint = Tag.objects.create(group=TagGroup.objects.create(name="服务"), name="投诉")
    ContactPolicy.objects.create(max_per_day=1, complaint_tag=complaint, complaint_days=30)
    campaign = _campaign()
    followed = sorted(
        set(
            Relationship.objects.filter(
                guide__wecom_userid__in=["guide0001", "guide0002"], is_active=True
            ).values_list("customer_id", flat=True)
        )
    )
    opted, complained, long_ago, over_quota, last_month, today, touched, refused = followed[:8]
    OptOut.objects.create(customer_id=opted)
    CustomerTag.objects.create(
        customer_id=complained, tag=complaint, added_at=now - timedelta(days=29)
    )
    CustomerTag.objects.create(
        customer_id=long_ago, tag=complaint, added_at=now - timedelta(days=31)
    )

    def earlier(customer_id: int, sent_at: datetime, status: str = "sent") -> None:
        other = Campaign.objects.create(
            name="往期", segment=campaign.segment, text="往期", status="sent", sent_at=sent_at
        )
        guide_id = Relationship.objects.filter(customer_id=customer_id).values("guide_id")[:1]
        CampaignRecipient.objects.create(
            campaign=other,
            customer_id=customer_id,
            guide_id=guide_id,
            variant="a",
            status=status,
            sent_at=sent_at,
        )

    month_start = datetime(2026, 11, 1, 0, 0, tzinfo=SHANGHAI)
    for day in range(30):  # 30 this month, before today: the quota, reached
        earlier(over_quota, month_start + timedelta(days=day // 2, hours=day % 2 + 10))
    for day in range(30):  # 30 in October: not this month's
        earlier(last_month, month_start - timedelta(days=day + 1))
    earlier(today, now - timedelta(hours=3), status="queued")  # today's one touch
    earlier(refused, now - timedelta(hours=3), status="not_friend")  # never reached them
    plan = SopPlan.objects.create(name="回访", trigger=SopPlan.Trigger.MANUAL, started_at=now)
    SopStep.objects.create(plan=plan, position=1, offset_days=0, script="您好")
    assert triggers.manual(plan=plan, customer_ids=[touched], now=now) == 1
    Touchpoint.objects.filter(customer_id=touched).update(
        status="task", task_at=now - timedelta(hours=2)
    )

    reach = campaign_prepare(campaign=campaign, now=now)

    assert reach["held"] == {"opted_out": 1, "complaint": 1, "wecom_limit": 1, "daily_cap": 2}
    assert reach["reach"] == len(followed) - 5 and reach["holdout"] == 0
    held = dict(
        CampaignRecipient.objects.filter(campaign=campaign, status="held").values_list(
            "customer_id", "reason"
        )
    )
    assert held == {
        opted: "opted_out",
        complained: "complaint",
        over_quota: "wecom_limit",
        today: "daily_cap",
        touched: "daily_cap",
    }


def test_sent_once_even_when_sent_twice(emulator):
    campaign = _campaign(text_b="B 版文案")
    gateway = WeComGateway.from_settings()
    first = campaign_send(campaign_id=campaign.pk, gateway=gateway)
    calls = emulator.stats().get("externalcontact/add_msg_template", 0)
    second = campaign_send(campaign_id=campaign.pk, gateway=gateway)
    assert second.skipped and emulator.stats().get("externalcontact/add_msg_template", 0) == calls
    groups = set(
        CampaignRecipient.objects.filter(campaign=campaign)
        .exclude(status="held")
        .values_list("guide_id", "variant")
    )
    assert first.messages == calls == len(groups) == CampaignMessage.objects.count()
    assert sum(len(m["targets"]) for m in emulator.data.group_msgs.values()) == first.recipients
    texts = {m["text"]["content"] for m in emulator.data.group_msgs.values()}
    assert texts == {"秋冬家居服上新了", "B 版文案"}
    assert Campaign.objects.get(pk=campaign.pk).status == "sent"


def test_a_send_cut_off_mid_call_is_never_repeated(emulator):
    campaign = _campaign()
    campaign_prepare(campaign=campaign)
    recipient = CampaignRecipient.objects.filter(campaign=campaign, status="targeted").first()
    # a run that died during its call for this guide, minutes ago
    message = CampaignMessage.objects.create(campaign=campaign, guide=recipient.guide, variant="a")
    CampaignMessage.objects.filter(pk=message.pk).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    Campaign.objects.filter(pk=campaign.pk).update(status="sending", sent_at=timezone.now())
    result = campaign_send(campaign_id=campaign.pk, gateway=WeComGateway.from_settings())
    assert result.unknown == 1
    senders = {userid for m in emulator.data.group_msgs.values() for userid in m["tasks"]}
    assert recipient.guide.wecom_userid not in senders
    assert CampaignMessage.objects.get(pk=message.pk).status == "unknown"


class _DiesOnSecondTask(WeComGateway):
    """The real gateway in a process that dies as it starts its second add_msg_template."""

    tasks = 0

    def add_msg_template(self, **kwargs) -> dict:
        self.tasks += 1
        if self.tasks == 2:
            raise SystemExit("killed")
        return super().add_msg_template(**kwargs)


def test_a_later_run_sends_the_same_parts_of_a_guide(emulator, monkeypatch):
    """A guide's customers go in parts of RECIPIENTS_PER_CALL (here 1). A run dies in its
    second part's call: the next run sends every later part of that guide, once."""
    monkeypatch.setattr(sending, "RECIPIENTS_PER_CALL", 1)
    campaign = _campaign()
    campaign_prepare(campaign=campaign)
    targeted = CampaignRecipient.objects.filter(campaign=campaign, status="targeted")
    first_guide = targeted.order_by("guide_id").values_list("guide_id", flat=True).first()
    first = list(
        targeted.filter(guide_id=first_guide)
        .order_by("customer_id")
        .values_list("guide__wecom_userid", "customer__external_userid")
    )
    assert len(first) >= 3
    everyone = set(targeted.values_list("guide__wecom_userid", "customer__external_userid"))
    with pytest.raises(SystemExit):
        campaign_send(campaign_id=campaign.pk, gateway=_DiesOnSecondTask.from_settings())
    result = campaign_send(campaign_id=campaign.pk, gateway=WeComGateway.from_settings())

    assert (result.unknown, result.messages) == (1, len(everyone) - 2)
    received = Counter(
        (target["userid"], target["external_userid"])
        for message in emulator.data.group_msgs.values()
        for target in message["targets"]
    )
    assert received == Counter(dict.fromkeys(everyone - {first[1]}, 1))
    parts = CampaignMessage.objects.filter(campaign=campaign, guide_id=first_guide)
    assert list(parts.order_by("part").values_list("part", "status")) == [
        (0, "created"),
        (1, "unknown"),
        *((part, "created") for part in range(2, len(first))),
    ]


def test_results_after_guides_confirm_and_attribution(emulator):
    campaign = _campaign(holdout_percent=20, cost=Decimal("100"), attribution_days=7)
    gateway = WeComGateway.from_settings()
    campaign_send(campaign_id=campaign.pk, gateway=gateway)
    confirmed = CampaignMessage.objects.filter(guide__wecom_userid="guide0001").first()
    emulator.guide_confirms_send(confirmed.msgid, "guide0001")
    counts = campaign_results(campaign=campaign, gateway=gateway)
    sent = CampaignRecipient.objects.filter(campaign=campaign, status="sent")
    assert counts["sent"] == sent.count() > 0 and counts["confirmed"] == 1
    assert set(sent.values_list("guide__wecom_userid", flat=True)) == {"guide0001"}
    # guide0002 has not confirmed: still queued
    assert CampaignRecipient.objects.filter(
        campaign=campaign, status="queued", guide__wecom_userid="guide0002"
    ).exists()
    # hand-built orders: one buyer 2 days after receiving, one 9 days after (outside)
    buyers = list(sent.order_by("customer_id")[:2])
    OrderFactory(
        customer=buyers[0].customer,
        paid_at=buyers[0].sent_at + timedelta(days=2),
        amount=Decimal("300"),
    )
    OrderFactory(
        customer=buyers[1].customer,
        paid_at=buyers[1].sent_at + timedelta(days=9),
        amount=Decimal("500"),
    )
    campaign.refresh_from_db()
    holdout = CampaignRecipient.objects.filter(campaign=campaign, status="holdout")
    OrderFactory(
        customer=holdout.first().customer,
        paid_at=campaign.sent_at + timedelta(days=1),
        amount=Decimal("80"),
    )
    result = attribution(campaign=campaign)
    assert (result["received"], result["buyers"], result["revenue"]) == (sent.count(), 1, 300.0)
    assert result["holdout_conversion"] == pytest.approx(1 / holdout.count())
    assert result["conversion"] == pytest.approx(1 / sent.count())
    assert result["roi"] == pytest.approx((300 - 100) / 100)
