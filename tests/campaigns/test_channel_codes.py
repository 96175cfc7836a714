"""Channel codes against the emulator: created in WeCom, a scan gets its welcome message
on the fast path (once, within 20 s), the code's tags and its SOP plan."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import ChannelCode, WelcomeSend
from campaigns.services import ChannelCodeError, channel_code_save, code_stats, qr_png, welcome_send
from contacts.models import Customer, Guide
from scrm.models import CallbackEvent
from scrm.wecom.gateway import WeComGateway
from sop.models import Enrollment, SopPlan
from tagging.models import CustomerTag, Tag, TagGroup
from tests.helpers import wait_for


def _code(**extra) -> ChannelCode:
    group, _ = TagGroup.objects.get_or_create(name="来源")
    tag, _ = Tag.objects.get_or_create(group=group, name="包裹卡")
    guides = list(Guide.objects.order_by("wecom_userid")[:2])
    return channel_code_save(
        code=None,
        fields={
            "name": "双11包裹卡",
            "source": ChannelCode.Source.PARCEL_CARD,
            "welcome_text": "{称呼}您好，我是{导购姓名}，感谢购买！",
            "welcome_attachments": [
                {"type": "link", "title": "会员中心", "url": "https://example.com/m"}
            ],
            **extra,
        },
        guide_ids=[g.pk for g in guides],
        tag_ids=[tag.pk],
        gateway=WeComGateway.from_settings(),
        by=None,
    )


@pytest.mark.django_db
def test_a_code_is_created_in_wecom_with_a_state_of_its_own(emulator):
    code = _code()
    way = emulator.data.contact_ways[code.config_id]
    assert way["state"] == code.state and len(code.state) <= 30
    assert way["user"] == code.wecom_users == ["guide0001", "guide0002"]
    assert qr_png(code)[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ChannelCodeError, match="至少要有一位"):
        channel_code_save(
            code=None,
            fields={"name": "空", "source": "other"},
            guide_ids=[],
            tag_ids=[],
            gateway=WeComGateway.from_settings(),
            by=None,
        )
    assert ChannelCode.objects.count() == 1


@pytest.mark.django_db
def test_a_welcome_code_is_used_once_and_not_after_20_seconds(emulator):
    code = _code()
    emulator.customer_scans_contact_way(code.config_id)  # no callback URL: we call the handler
    issued = next(iter(emulator.data.welcome_codes))
    who = emulator.data.welcome_codes[issued]
    event = {
        "WelcomeCode": issued,
        "State": code.state,
        "UserID": who["userid"],
        "ExternalUserID": who["external_userid"],
    }
    first = welcome_send(
        event=event, received_at=timezone.now(), gateway=WeComGateway.from_settings()
    )
    again = welcome_send(
        event=event, received_at=timezone.now(), gateway=WeComGateway.from_settings()
    )
    assert first.status == "sent" and again.pk == first.pk
    assert len(emulator.welcome_messages) == 1
    late = {**event, "WelcomeCode": "late-code"}
    expired = welcome_send(
        event=late,
        received_at=timezone.now() - timedelta(seconds=25),
        gateway=WeComGateway.from_settings(),
    )
    assert expired.status == "expired" and len(emulator.welcome_messages) == 1


@pytest.mark.django_db(transaction=True)
def test_a_scan_is_welcomed_tagged_and_enrolled_through_the_callback(
    emulator, live_server, celery_worker
):
    plan = SopPlan.objects.create(
        name="包裹卡新客",
        trigger=SopPlan.Trigger.MANUAL,
        started_at=timezone.now() - timedelta(days=1),
    )
    plan.steps.create(position=1, script="hi")
    code = _code(sop_plan=plan)
    emulator.config.callback_url = f"{live_server.url}/wecom/callback/"
    assert emulator.customer_scans_contact_way(code.config_id) == 200
    event = CallbackEvent.objects.get(change_type="add_external_contact")
    wait_for(
        lambda: WelcomeSend.objects.filter(code=code).exclude(status="sending").exists(),
        timeout=30,
    )
    send = WelcomeSend.objects.get()
    assert send.status == "sent" and send.latency_ms < 20_000
    (message,) = emulator.welcome_messages
    assert message["text"]["content"].endswith(
        "您好，我是" + Guide.objects.get(wecom_userid=send.userid).name + "，感谢购买！"
    )
    assert message["attachments"][0]["link"]["url"] == "https://example.com/m"
    wait_for(
        lambda: CallbackEvent.objects.get(pk=event.pk).status == CallbackEvent.Status.HANDLED,
        timeout=30,
    )
    customer = Customer.objects.get(external_userid=event.payload["ExternalUserID"])
    assert CustomerTag.objects.filter(customer=customer, tag__name="包裹卡").count() == 1
    assert Enrollment.objects.filter(plan=plan, customer=customer).count() == 1
    stats = code_stats()[code.pk]
    assert (stats["adds"], stats["members"], stats["deleted_within_7d"], stats["welcomes"]) == (
        1,
        1,
        0,
        1,
    )
