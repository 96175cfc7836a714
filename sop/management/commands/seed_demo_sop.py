"""Demo SOP plans, and today's tasks for the demo guides.

Idempotent: plans are found by name and their steps rewritten; enrolment keys
make re-running enrol nobody twice. Gives guide1 and guide2 tasks now (a manual
enrolment of some of their customers, in a plan whose window is the whole day) and
runs one dispatch. So that the demo has tasks at any hour, the demo brand keeps no
quiet hours (by default 21:30-09:00, when nothing is given); SOP → 触达规则 sets them.
"""

from datetime import time

from django.core.management.base import BaseCommand
from django.utils import timezone

from contacts.models import Relationship
from sop import scheduling, services, triggers
from sop.models import ContactPolicy, SopPlan

DAY = {"window_start": time(10), "window_end": time(21)}
ALL_DAY = {"window_start": time(0), "window_end": time(23, 59)}
PLANS = [
    (
        "新客欢迎",
        {"trigger": SopPlan.Trigger.CONTACT_ADDED, "priority": 30},
        [
            {
                "offset_days": 0,
                "action": "message",
                "script": "{称呼}您好，我是{门店}的{导购姓名}，以后穿搭、尺码、售后都可以直接找我～",
            },
            {
                "offset_days": 1,
                "action": "moments_like",
                "script": "去客户朋友圈点个赞，留意她最近的穿搭偏好",
            },
            {
                "offset_days": 7,
                "action": "group_invite",
                "script": "{称呼}，我们有个福利群，每周有新品试穿和专属券，邀请您进群～",
            },
            {
                "offset_days": 15,
                "action": "message",
                "script": "{称呼}，最近降温了，{最近购买商品}的同系列有加厚款，需要我发图给您看看吗？",
            },
            {
                "offset_days": 30,
                "action": "call",
                "script": "电话回访：了解使用感受，记录尺码和偏好",
            },
        ],
    ),
    (
        "首单关怀",
        {"trigger": SopPlan.Trigger.FIRST_ORDER, "priority": 40, "stop_on_contact_deleted": True},
        [
            {
                "offset_days": 3,
                "action": "message",
                "script": "{称呼}，{最近购买商品}收到了吗？穿着合不合适？有任何问题随时找我",
            },
            {
                "offset_days": 15,
                "action": "message",
                "script": "{称呼}，分享一下{最近购买商品}的洗护小贴士：冷水手洗、平铺晾干，能穿得更久哦",
            },
        ],
    ),
    (
        "复购提醒",
        {"trigger": SopPlan.Trigger.REPURCHASE_DUE, "priority": 20, "stop_on_purchase": True},
        [
            {
                "offset_days": 0,
                "action": "message",
                "script": "{称呼}，按您的习惯差不多该补货啦，{最近购买商品}这周会员价，需要帮您留一件吗？",
            }
        ],
    ),
    (
        "沉睡唤醒",
        {
            "trigger": SopPlan.Trigger.DAYS_SINCE_PURCHASE,
            "trigger_params": {"days": 90},
            "priority": 10,
            "stop_on_purchase": True,
        },
        [
            {
                "offset_days": 0,
                "action": "message",
                "script": "{称呼}，好久不见～给您准备了一张老客回归券，7 天内有效",
            },
            {"offset_days": 7, "action": "call", "script": "电话回访沉睡客户，了解未复购原因"},
        ],
    ),
    (
        "生日祝福",
        {"trigger": SopPlan.Trigger.BIRTHDAY, "priority": 50},
        [
            {
                "offset_days": 0,
                "action": "message",
                "script": "{称呼}生日快乐🎂 {门店}为您准备了生日礼，到店或线上下单都可以用",
            }
        ],
    ),
    (
        "秋冬上新",
        {"trigger": SopPlan.Trigger.MANUAL, "priority": 25, "stop_on_purchase": True},
        [
            {
                "offset_days": 0,
                "offset_hours": 0,
                "action": "message",
                "script": "{称呼}，秋冬家居服上新了，真丝和加绒款都到了，给您发几张实拍图？",
                **ALL_DAY,
            },
            {"offset_days": 2, "action": "moments_comment", "script": "在客户的朋友圈评论互动"},
        ],
    ),
]


class Command(BaseCommand):
    help = "Create the demo's SOP plans and today's tasks for guide1 and guide2."

    def handle(self, *args, **options) -> None:
        plans = {}
        for name, fields, steps in PLANS:
            plan = SopPlan.objects.filter(name=name).first()
            plans[name] = services.plan_save(
                plan=plan,
                fields={"name": name, **fields},
                steps=[{**DAY, **step} for step in steps],
                by=None,
            )
        policy = ContactPolicy.current()
        policy.quiet_end = policy.quiet_start  # the same start and end: no quiet hours
        policy.save()
        now = timezone.now()
        customers = list(
            Relationship.objects.filter(
                guide__wecom_userid__in=["guide0001", "guide0002"], is_active=True
            )
            .order_by("guide_id", "-added_at")
            .values_list("customer_id", flat=True)[:40]
        )
        enrolled = triggers.manual(plan=plans["秋冬上新"], customer_ids=customers, now=now)
        enrolled += triggers.daily(now=now)
        result = scheduling.dispatch(now=now)
        self.stdout.write(
            f"demo SOP: {len(PLANS)} plans, {enrolled} enrolled, {result.created} tasks now"
        )
