"""Demo tags: rule tags an operator of a loungewear brand would write, and manual tags.

Idempotent (tags are found by group and name; rules are rewritten to these
conditions). Evaluated by `retag --full`, which `rundemo` runs next.
"""

from django.core.management.base import BaseCommand
from django.db import transaction

from tagging import services
from tagging.models import Tag, TagGroup

GROUPS = {"运营规则": 1, "运营手动": 2}
RULES = [
    ("冰丝忠实客", "#13c2c2", {"fact": "material_share", "key": "冰丝", "op": ">=", "value": 0.6}),
    ("棉质偏好", "#52c41a", {"fact": "material_share", "key": "棉", "op": ">=", "value": 0.6}),
    (
        "主题款爱好者",
        "#eb2f96",
        {"fact": "style_share", "key": "主题款", "by": "revenue", "op": ">=", "value": 0.5},
    ),
    (
        "近90天复购",
        "#fa8c16",
        {"fact": "purchase_days", "op": ">=", "value": 2, "days": 90},
    ),
    (
        "高客单会员",
        "#722ed1",
        {
            "all": [
                {"fact": "is_member", "op": "is", "value": True},
                {"fact": "avg_order_value", "op": ">=", "value": 200},
            ]
        },
    ),
    (
        "公域买家未入会",
        "#8c8c8c",
        {
            "all": [
                {"fact": "is_member", "op": "is", "value": False},
                {"fact": "channel", "op": "any_of", "value": ["tmall", "jd", "douyin"]},
            ]
        },
    ),
    (
        "该复购了",
        "#f5222d",
        {
            "all": [
                {"fact": "purchase_days", "op": ">=", "value": 2},
                {"fact": "days_since_last_purchase", "op": "between", "value": [30, 120]},
                {"not": {"fact": "median_interval_days", "op": ">", "value": 120}},
            ]
        },
    ),
    (
        "年消费过千",
        "#faad14",
        {"fact": "net_revenue", "op": ">=", "value": 1000, "days": 365},
    ),
]
MANUAL = [("重点维护", "#f5222d"), ("投诉过", "#595959"), ("KOC 种草官", "#2f54eb")]


class Command(BaseCommand):
    help = "Create the demo's rule and manual tags."

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        groups = {
            name: TagGroup.objects.get_or_create(name=name, defaults={"order": order})[0]
            for name, order in GROUPS.items()
        }
        for name, color, condition in RULES:
            tag = Tag.objects.filter(group=groups["运营规则"], name=name).first()
            services.rule_save(
                tag=tag,
                group=groups["运营规则"],
                name=name,
                color=color,
                condition=condition,
                is_active=True,
                by=None,
            )
        for name, color in MANUAL:
            Tag.objects.get_or_create(
                group=groups["运营手动"], name=name, defaults={"color": color}
            )
        self.stdout.write(f"demo tags: {len(RULES)} rules, {len(MANUAL)} manual tags")
