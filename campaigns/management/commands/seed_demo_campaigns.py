"""Demo channel codes and a campaign, created through WeCom (the emulator) as an operator
would, and the weekly report's recipients. Idempotent: found by name."""

from decimal import Decimal

from django.core.management.base import BaseCommand

from analytics.models import ReportRecipient
from campaigns.models import Campaign, ChannelCode
from campaigns.sending import campaign_send
from campaigns.services import channel_code_save
from contacts.models import Guide, Store
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
                text="{称呼}，秋冬真丝家居服上新啦，会员专享 9 折，点击查看👇",
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
