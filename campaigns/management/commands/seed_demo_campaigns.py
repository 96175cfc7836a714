"""Demo channel codes, a campaign and group SOP schedules, created through WeCom (the
emulator) as an operator would; customers joining and leaving some groups, as WeCom users
would (the emulator's simulated actions, then the change_external_chat handler), so the
社群 page has joins, quits and buyers; and the weekly report's recipients. Idempotent:
found by name (the group moves happen once, with the schedules)."""

import random
from datetime import time, timedelta
from decimal import Decimal

import requests
from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from analytics.models import ReportRecipient
from campaigns.group_sop import group_schedule_save
from campaigns.models import Campaign, ChannelCode, GroupSchedule
from campaigns.sending import campaign_send
from campaigns.services import channel_code_save
from contacts.models import Customer, CustomerGroup, Guide, Store
from contacts.services import group_refresh
from scrm.wecom.gateway import WeComGateway
from sop.models import SopPlan
from tagging.models import Tag, TagGroup

CODES = [
    (
        "双11包裹卡",
        ChannelCode.Source.PARCEL_CARD,
        ChannelCode.Distribution.ROUND_ROBIN,
        "包裹卡",
        "{称呼}您好！我是您的专属顾问{导购姓名}，感谢购买～领取会员礼包请回复 1",
        Decimal("3000"),
    ),
    (
        "静安店桌贴",
        ChannelCode.Source.STORE,
        ChannelCode.Distribution.BY_STORE,
        "门店扫码",
        "欢迎来到{门店}！我是{导购姓名}，到店试穿、预约改衣都可以找我",
        Decimal("200"),
    ),
    (
        "618 直播间",
        ChannelCode.Source.LIVE,
        ChannelCode.Distribution.LEAST_LOADED,
        "直播",
        "{称呼}，感谢从直播间加我！直播专属券已为您准备好",
        Decimal("1500"),
    ),
]


MOVED_GROUPS = 30  # groups that see customers join and leave
SOP_GROUPS = 8  # groups of the demo's group SOP schedules


def _emulator_action(name: str, **arguments) -> None:
    """A simulated WeCom user action on the demo's emulator (it delivers the callback)."""
    base = settings.WECOM_API_BASE.removesuffix("/").removesuffix("/cgi-bin")
    response = requests.post(f"{base}/_emulator/actions/{name}", json=arguments, timeout=30)
    response.raise_for_status()


def _group_moves(gateway, customers: list[str]) -> int:
    """In some groups a few customers join and one or two members leave, through WeCom;
    each group is then refreshed as the change_external_chat callback does."""
    rng = random.Random(8)  # noqa: S311 - demo data
    moves = 0
    groups = CustomerGroup.objects.filter(is_dismissed=False).order_by("chat_id")
    for group in groups[:MOVED_GROUPS]:
        present = set(group.members.values_list("userid", flat=True))
        joining = rng.sample([c for c in customers if c not in present], k=rng.randint(2, 6))
        _emulator_action("group_member_joins", chat_id=group.chat_id, external_userid=joining)
        leaving = [
            userid
            for userid in group.members.filter(type=2).values_list("userid", flat=True)[:30]
            if rng.random() < 0.12
        ]
        if leaving:
            _emulator_action("group_member_leaves", chat_id=group.chat_id, external_userid=leaving)
        group_refresh(
            event={"ChatId": group.chat_id, "ChangeType": "update", "UpdateDetail": "add_member"},
            gateway=gateway,
        )
        moves += len(joining) + len(leaving)
    return moves


def _group_schedules() -> None:
    """A daily 早安 message and tonight's live-stream notice (sent by the beat when due)."""
    chosen = list(
        CustomerGroup.objects.filter(is_dismissed=False)
        .order_by("chat_id")
        .values_list("pk", flat=True)[:SOP_GROUPS]
    )
    if not chosen:
        return
    link = [{"type": "link", "title": "会员福利社", "url": "https://example.com/club"}]
    group_schedule_save(
        schedule=None,
        fields={
            "name": "早安福利",
            "text": "早上好！今日会员福利已上架，点开看看有没有你喜欢的👇",
            "attachments": link,
            "repeat": GroupSchedule.Repeat.DAILY,
            "slot_time": time(9, 0),
            "is_active": True,
        },
        group_ids=chosen,
        by=None,
    )
    group_schedule_save(
        schedule=None,
        fields={
            "name": "今晚直播预告",
            "text": "今晚 8 点直播间上新真丝家居服，群友专享券已备好～",
            "attachments": [],
            "repeat": GroupSchedule.Repeat.ONCE,
            "send_at": timezone.now() + timedelta(minutes=10),
            "is_active": True,
        },
        group_ids=chosen[: SOP_GROUPS // 2],
        by=None,
    )


class Command(BaseCommand):
    help = "Create the demo's channel codes, a campaign and the report recipients."

    def handle(self, *args, **options) -> None:
        gateway = WeComGateway.from_settings()
        group, _ = TagGroup.objects.get_or_create(name="来源渠道", defaults={"order": 3})
        welcome_plan = SopPlan.objects.filter(name="新客欢迎").first()
        stores = list(Store.objects.order_by("code"))
        for name, source, distribution, tag_name, welcome, cost in CODES:
            tag, _ = Tag.objects.get_or_create(group=group, name=tag_name)
            if ChannelCode.objects.filter(name=name).exists():
                continue
            guides = Guide.objects.active().filter(store=stores[0]) if stores else Guide.objects
            channel_code_save(
                code=None,
                fields={
                    "name": name,
                    "source": source,
                    "distribution": distribution,
                    "store": stores[0]
                    if distribution == ChannelCode.Distribution.BY_STORE
                    else None,
                    "welcome_text": welcome,
                    "welcome_attachments": [
                        {"type": "link", "title": "会员中心", "url": "https://example.com/member"}
                    ],
                    "sop_plan": welcome_plan,
                    "cost": cost,
                },
                guide_ids=list(guides.values_list("pk", flat=True)[:6]),
                tag_ids=[tag.pk],
                gateway=gateway,
                by=None,
            )
        if not Campaign.objects.filter(name="秋冬新品上新").exists():
            campaign = Campaign.objects.create(
                name="秋冬新品上新",
                segment={
                    "all": [
                        {"fact": "purchase_days", "op": ">=", "value": 1},
                        {"fact": "days_since_last_purchase", "op": "<=", "value": 180},
                    ]
                },
                text="亲爱的会员，秋冬真丝家居服上新啦，会员专享 9 折，点击查看👇",
                text_b="秋冬上新：加绒睡衣和真丝系列到货，老客专享价只到本周日",
                attachments=[
                    {"type": "link", "title": "秋冬新品", "url": "https://example.com/new"}
                ],
                holdout_percent=10,
                cost=Decimal("800"),
            )
            result = campaign_send(campaign_id=campaign.pk, gateway=gateway)
            self.stdout.write(
                f"demo campaign: {result.recipients} customers handed to {result.messages} guides"
            )
        if not GroupSchedule.objects.exists():
            customers = sorted(
                Customer.objects.filter(external_userid__isnull=False).values_list(
                    "external_userid", flat=True
                )
            )
            moves = _group_moves(gateway, customers)
            _group_schedules()
            self.stdout.write(f"demo groups: {moves} members joined or left, 2 group SOPs")
        for store in stores[:3]:
            manager = Guide.objects.filter(store=store).order_by("wecom_userid").first()
            if manager and not store.manager_userid:
                store.manager_userid = manager.wecom_userid
                store.save(update_fields=["manager_userid"])
        ReportRecipient.objects.get_or_create(
            name="私域负责人 李强",
            defaults={"email": "manager@example.com", "wecom_userid": "guide0003"},
        )
        self.stdout.write(f"demo channel codes: {ChannelCode.objects.count()}")
