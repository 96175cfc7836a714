"""Forms of the 活动 pages: parse what operators type into the shapes campaigns.services
and campaigns.sending take. A channel code's rules (someone to hand adds to, manual tags
only, the welcome's limits) are checked by `channel_code_save`, a campaign's content and
reach by `campaign_prepare`; these forms check that the input can be read and that the
segment compiles. The writes are campaigns.services'."""

import json
from datetime import date, timedelta
from decimal import Decimal

from django import forms
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaigns.models import (
    Campaign,
    CampaignMessage,
    CampaignRecipient,
    ChannelCode,
    GroupSchedule,
    GroupSend,
    WelcomeSend,
)
from contacts.models import CustomerGroup, Guide, Store
from scrm.web import ADDRESS_KEYS, is_web_address
from sop.models import SopPlan
from sop.scheduling import _today
from tagging.models import Tag
from tagging.rules import RuleError
from tagging.services import rule_compile

MAX_ATTACHMENTS = 9  # WeCom: a welcome or mass message carries at most 9 attachments
MAX_TEXT = 4000
ATTACHMENT_KEYS = ("title", "url", "pic_url", "appid", "page", "desc")

# The words of the 活动 pages in the reader's language (the models keep the Chinese ones).
SOURCE_LABELS = {
    ChannelCode.Source.PARCEL_CARD: gettext_lazy("包裹卡"),
    ChannelCode.Source.STORE: gettext_lazy("门店"),
    ChannelCode.Source.LIVE: gettext_lazy("直播"),
    ChannelCode.Source.EVENT: gettext_lazy("线下活动"),
    ChannelCode.Source.OTHER: gettext_lazy("其他"),
}
DISTRIBUTION_LABELS = {
    ChannelCode.Distribution.ROUND_ROBIN: gettext_lazy("轮流分配"),
    ChannelCode.Distribution.LEAST_LOADED: gettext_lazy("客户最少的导购优先"),
    ChannelCode.Distribution.BY_STORE: gettext_lazy("门店的导购"),
}
CAMPAIGN_STATUS_LABELS = {
    Campaign.Status.DRAFT: gettext_lazy("草稿"),
    Campaign.Status.SCHEDULED: gettext_lazy("待发送"),
    Campaign.Status.SENDING: gettext_lazy("发送中"),
    Campaign.Status.SENT: gettext_lazy("已交给导购"),
    Campaign.Status.CANCELLED: gettext_lazy("已取消"),
}
RECIPIENT_STATUS_LABELS = {
    CampaignRecipient.Status.TARGETED: gettext_lazy("待发送"),
    CampaignRecipient.Status.HELD: gettext_lazy("被拦截"),
    CampaignRecipient.Status.QUEUED: gettext_lazy("待导购确认"),
    CampaignRecipient.Status.SENT: gettext_lazy("已送达"),
    CampaignRecipient.Status.NOT_FRIEND: gettext_lazy("已不是好友"),
    CampaignRecipient.Status.OVER_LIMIT: gettext_lazy("超过企业微信接收上限"),
    CampaignRecipient.Status.HOLDOUT: gettext_lazy("对照组（不发送）"),
}
# Why campaign_prepare holds a customer back.
HELD_LABELS = {
    "opted_out": gettext_lazy("客户拒绝触达"),
    "complaint": gettext_lazy("投诉后免打扰"),
    "wecom_limit": gettext_lazy("本月企业微信群发次数已满"),
    "daily_cap": gettext_lazy("超过每日上限"),
}
MESSAGE_STATUS_LABELS = {
    CampaignMessage.Status.SENDING: gettext_lazy("发送中"),
    CampaignMessage.Status.CREATED: gettext_lazy("待导购确认"),
    CampaignMessage.Status.CONFIRMED: gettext_lazy("导购已发送"),
    CampaignMessage.Status.FAILED: gettext_lazy("失败"),
    CampaignMessage.Status.UNKNOWN: gettext_lazy("结果未知"),
}
WELCOME_STATUS_LABELS = {
    WelcomeSend.Status.SENT: gettext_lazy("已发送"),
    WelcomeSend.Status.FAILED: gettext_lazy("失败"),
    WelcomeSend.Status.EXPIRED: gettext_lazy("超过 20 秒"),
}
ATTACHMENT_TYPES = {
    "image": gettext_lazy("图片"),
    "link": gettext_lazy("链接"),
    "miniprogram": gettext_lazy("小程序"),
}
ATTACHMENT_FIELD_LABELS = {
    "title": gettext_lazy("标题"),
    "url": gettext_lazy("链接地址"),
    "pic_url": gettext_lazy("图片地址"),
    "appid": gettext_lazy("小程序 AppID"),
    "page": gettext_lazy("小程序页面"),
}
# What each attachment type cannot do without (WeCom refuses the message otherwise).
ATTACHMENT_NEEDS = {
    "image": ("pic_url",),
    "link": ("title", "url"),
    "miniprogram": ("title", "appid", "page"),
}
# The welcome's variables (campaigns.services._render fills them).
WELCOME_VARIABLES = {
    "{称呼}": gettext_lazy("客户的称呼，没有名字时为“您”"),
    "{导购姓名}": gettext_lazy("接待导购的名字"),
    "{门店}": gettext_lazy("导购所在门店"),
}


def _mass_text(text: str) -> str:
    from campaigns.sending import mass_text_refusal, mass_text_variables

    if unfilled := mass_text_variables(text):
        raise forms.ValidationError(mass_text_refusal(unfilled))
    return text


def held_label(reason: str) -> str:
    return str(HELD_LABELS.get(reason, reason or "—"))


def attachments_clean(raw) -> list[dict]:
    """Attachments as the editor writes them (JSON): [{type, title, url, pic_url, appid,
    page}], empty keys dropped. The count is checked by the services."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw or "[]")
        except ValueError:
            raise forms.ValidationError(_("附件的数据无法读取，请刷新页面后重试。")) from None
    if raw in (None, ""):
        return []
    if not isinstance(raw, list):
        raise forms.ValidationError(_("附件应是一个列表。"))
    cleaned = []
    for number, item in enumerate(raw, start=1):
        if not isinstance(item, dict) or item.get("type") not in ATTACHMENT_TYPES:
            raise forms.ValidationError(
                _("第 %(n)s 个附件：类型只能是图片、链接或小程序。") % {"n": number}
            )
        entry = {"type": item["type"]}
        for key in ATTACHMENT_KEYS:
            value = str(item.get(key) or "").strip()
            if value and key in ADDRESS_KEYS and not is_web_address(value):
                raise forms.ValidationError(
                    _("第 %(n)s 个附件：地址要以 http:// 或 https:// 开头：%(value)s")
                    % {"n": number, "value": value}
                )
            if value:
                entry[key] = value[:500]
        missing = [key for key in ATTACHMENT_NEEDS[entry["type"]] if key not in entry]
        if missing:
            names = "、".join(str(ATTACHMENT_FIELD_LABELS[key]) for key in missing)
            raise forms.ValidationError(
                _("第 %(n)s 个附件缺少：%(fields)s") % {"n": number, "fields": names}
            )
        cleaned.append(entry)
    return cleaned


def segment_clean(raw):
    """A segment in tagging's rule language, as JSON text or parsed: it must compile."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as error:
            raise forms.ValidationError(
                _("人群条件不是有效的 JSON：%(error)s") % {"error": error}
            ) from None
    try:
        rule_compile(raw)
    except RuleError as error:
        raise forms.ValidationError(_("人群条件：%(reason)s") % {"reason": error}) from None
    return raw


class _GuideChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Guide) -> str:
        store = f" · {obj.store.name}" if obj.store_id else ""
        return f"{obj.name} ({obj.wecom_userid}){store}"


class _TagChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Tag) -> str:
        return f"{obj.group.label} / {obj.label}"


class ChannelCodeForm(forms.Form):
    """A channel code: where it is used, who receives the adds (chosen guides, or the
    guides of a store), tags and an SOP plan on joining, the welcome message, its cost."""

    name = forms.CharField(label=gettext_lazy("名称"), max_length=30)
    source = forms.ChoiceField(label=gettext_lazy("来源"))
    distribution = forms.ChoiceField(label=gettext_lazy("分配方式"))
    guides = _GuideChoices(
        label=gettext_lazy("接待导购"),
        queryset=Guide.objects.none(),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 8}),
        help_text=gettext_lazy("按住 Ctrl（Mac 上为 ⌘）可多选。"),
    )
    store = forms.ModelChoiceField(
        label=gettext_lazy("门店"),
        queryset=Store.objects.none(),
        required=False,
        empty_label=gettext_lazy("— 选择门店 —"),
    )
    tags = _TagChoices(
        label=gettext_lazy("添加好友后打上的标签"),
        queryset=Tag.objects.none(),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text=gettext_lazy("只能选择手动标签：规则和系统标签由系统计算。"),
    )
    welcome_text = forms.CharField(
        label=gettext_lazy("欢迎语"),
        required=False,
        max_length=MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    welcome_attachments = forms.CharField(widget=forms.HiddenInput, required=False)
    sop_plan = forms.ModelChoiceField(
        label=gettext_lazy("加入 SOP 计划"),
        queryset=SopPlan.objects.none(),
        required=False,
        empty_label=gettext_lazy("— 不加入 —"),
    )
    cost = forms.DecimalField(
        label=gettext_lazy("成本（元）"),
        min_value=0,
        max_digits=12,
        decimal_places=2,
        initial=Decimal(0),
        help_text=gettext_lazy("印刷、物料、投放等费用，用来计算每位会员的成本。"),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = [(k, str(v)) for k, v in SOURCE_LABELS.items()]
        self.fields["distribution"].choices = [(k, str(v)) for k, v in DISTRIBUTION_LABELS.items()]
        self.fields["guides"].queryset = Guide.objects.active().select_related("store")
        self.fields["store"].queryset = Store.objects.all()
        self.fields["tags"].queryset = (
            Tag.objects.filter(source=Tag.Source.MANUAL)
            .select_related("group")
            .order_by("group__order", "group_id", "order", "id")
        )
        self.fields["sop_plan"].queryset = SopPlan.objects.order_by("-is_active", "name")

    @classmethod
    def initial_from(cls, code: ChannelCode) -> dict:
        return {
            "name": code.name,
            "source": code.source,
            "distribution": code.distribution,
            "guides": [guide.pk for guide in code.guides.all()],
            "store": code.store_id,
            "tags": [tag.pk for tag in code.tags.all()],
            "welcome_text": code.welcome_text,
            "welcome_attachments": json.dumps(code.welcome_attachments, ensure_ascii=False),
            "sop_plan": code.sop_plan_id,
            "cost": code.cost,
        }

    def clean_name(self) -> str:
        return self.cleaned_data["name"].strip()

    def clean_welcome_attachments(self) -> list[dict]:
        return attachments_clean(self.cleaned_data["welcome_attachments"])

    def service_arguments(self) -> dict:
        """channel_code_save's fields, guide_ids and tag_ids (after is_valid())."""
        data = self.cleaned_data
        by_store = data["distribution"] == ChannelCode.Distribution.BY_STORE
        return {
            "fields": {
                "name": data["name"],
                "source": data["source"],
                "distribution": data["distribution"],
                "store": data["store"] if by_store else None,
                "welcome_text": data["welcome_text"],
                "welcome_attachments": data["welcome_attachments"],
                "sop_plan": data["sop_plan"],
                "cost": data["cost"],
            },
            "guide_ids": [] if by_store else [guide.pk for guide in data["guides"]],
            "tag_ids": [tag.pk for tag in data["tags"]],
        }


class CampaignForm(forms.Form):
    """A campaign: its segment (tagging's rule language, written by tagging's condition
    builder), content A and an optional B, attachments, the holdout, the attribution
    window and the cost. When it is sent is the button pressed (and `schedule_at`)."""

    name = forms.CharField(label=gettext_lazy("名称"), max_length=100)
    # Named as in the rule editor: tagging/rule_editor.js reads textarea[name=condition].
    condition = forms.CharField(
        label=gettext_lazy("人群条件（JSON）"),
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
    )
    text = forms.CharField(
        label=gettext_lazy("内容 A"),
        required=False,
        max_length=MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    text_b = forms.CharField(
        label=gettext_lazy("内容 B（可选，用于 A/B 测试）"),
        required=False,
        max_length=MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=gettext_lazy("填写后，收到群发的客户一半收到 A、一半收到 B（按客户固定分组）。"),
    )
    attachments = forms.CharField(widget=forms.HiddenInput, required=False)
    holdout_percent = forms.IntegerField(
        label=gettext_lazy("对照组比例 %"),
        min_value=0,
        max_value=50,
        initial=0,
        help_text=gettext_lazy("这部分客户不发送，用来比较群发带来的增量。"),
    )
    schedule_at = forms.DateTimeField(
        label=gettext_lazy("定时发送时间（上海时间）"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    attribution_days = forms.IntegerField(
        label=gettext_lazy("归因窗口（天）"), min_value=1, max_value=90, initial=7
    )
    cost = forms.DecimalField(
        label=gettext_lazy("成本（元）"),
        min_value=0,
        max_digits=12,
        decimal_places=2,
        initial=Decimal(0),
    )

    @classmethod
    def initial_from(cls, campaign: Campaign) -> dict:
        return {
            "name": campaign.name,
            "condition": json.dumps(campaign.segment, ensure_ascii=False, indent=2),
            "text": campaign.text,
            "text_b": campaign.text_b,
            "attachments": json.dumps(campaign.attachments, ensure_ascii=False),
            "holdout_percent": campaign.holdout_percent,
            "schedule_at": timezone.localtime(campaign.schedule_at)
            if campaign.schedule_at
            else None,
            "attribution_days": campaign.attribution_days,
            "cost": campaign.cost,
        }

    def clean_name(self) -> str:
        return self.cleaned_data["name"].strip()

    def clean_condition(self):
        return segment_clean(self.cleaned_data["condition"])

    def clean_text(self) -> str:
        return _mass_text(self.cleaned_data["text"])

    def clean_text_b(self) -> str:
        return _mass_text(self.cleaned_data["text_b"])

    def clean_attachments(self) -> list[dict]:
        items = attachments_clean(self.cleaned_data["attachments"])
        if len(items) > MAX_ATTACHMENTS:
            raise forms.ValidationError(_("最多 %(n)s 个附件。") % {"n": MAX_ATTACHMENTS})
        return items

    def campaign_fields(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "segment": data["condition"],
            "text": data["text"],
            "text_b": data["text_b"],
            "attachments": data["attachments"],
            "holdout_percent": data["holdout_percent"],
            "schedule_at": data["schedule_at"],
            "attribution_days": data["attribution_days"],
            "cost": data["cost"],
        }


# -- customer groups (社群) ------------------------------------------------------------------

GROUP_WINDOW_DAYS = 30  # the default window: the last 30 days, today included
GROUP_WINDOW_MAX_DAYS = 5 * 366


GROUP_SORT_LABELS = {
    "members": gettext_lazy("当前人数"),
    "joins": gettext_lazy("入群"),
    "quits": gettext_lazy("退群"),
    "quit_rate": gettext_lazy("退群率"),
    "buyers": gettext_lazy("购买成员"),
    "revenue": gettext_lazy("购买成员收入"),
    "name": gettext_lazy("群名"),
}
GROUP_SORT_DEFAULT = "members"


class GroupWindowForm(forms.Form):
    """The window of the group numbers: two dates, both whole days in Asia/Shanghai;
    by default the last 30 days to today. And which groups, in which order: a search
    text (group name, chat id, owner) and a sort (largest first; by size by default)."""

    start = forms.DateField(label=gettext_lazy("开始日期"), required=False)
    end = forms.DateField(label=gettext_lazy("结束日期"), required=False)
    q = forms.CharField(label=gettext_lazy("搜索"), required=False, max_length=50)
    sort = forms.ChoiceField(
        label=gettext_lazy("排序"), required=False, choices=list(GROUP_SORT_LABELS.items())
    )

    def clean(self) -> dict:
        data = super().clean()
        end = data.get("end") or _today()
        start = data.get("start") or end - timedelta(days=GROUP_WINDOW_DAYS - 1)
        if start > end:
            raise forms.ValidationError(_("开始日期不能晚于结束日期。"))
        if (end - start).days > GROUP_WINDOW_MAX_DAYS:
            raise forms.ValidationError(_("日期范围最长 5 年。"))
        data["start"], data["end"] = start, end
        data["sort"] = data.get("sort") or GROUP_SORT_DEFAULT
        return data

    def window(self) -> tuple[date, date]:
        """(start, end) dates; the default when the form is unbound or invalid."""
        if self.is_bound and self.is_valid():
            return self.cleaned_data["start"], self.cleaned_data["end"]
        end = _today()
        return end - timedelta(days=GROUP_WINDOW_DAYS - 1), end

    def listing(self) -> tuple[str, str]:
        """(search text, sort); all groups by size when the form is unbound or invalid."""
        if self.is_bound and self.is_valid():
            return self.cleaned_data["q"], self.cleaned_data["sort"]
        return "", GROUP_SORT_DEFAULT


WEEKDAY_LABELS = [
    (1, gettext_lazy("周一")),
    (2, gettext_lazy("周二")),
    (3, gettext_lazy("周三")),
    (4, gettext_lazy("周四")),
    (5, gettext_lazy("周五")),
    (6, gettext_lazy("周六")),
    (7, gettext_lazy("周日")),
]
REPEAT_LABELS = {
    GroupSchedule.Repeat.ONCE: gettext_lazy("一次"),
    GroupSchedule.Repeat.DAILY: gettext_lazy("每天"),
    GroupSchedule.Repeat.WEEKLY: gettext_lazy("每周"),
}
GROUP_SEND_STATUS_LABELS = {
    GroupSend.Status.SENDING: gettext_lazy("发送中"),
    GroupSend.Status.CREATED: gettext_lazy("待群主确认"),
    GroupSend.Status.CONFIRMED: gettext_lazy("群主已发送"),
    GroupSend.Status.OWNER_LEFT: gettext_lazy("群主已离职"),
    GroupSend.Status.FAILED: gettext_lazy("失败"),
    GroupSend.Status.UNKNOWN: gettext_lazy("结果未知"),
}


class _GroupChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: CustomerGroup) -> str:
        return f"{obj.name or obj.chat_id} · {obj.owner_userid} · {obj.member_count}"


class GroupScheduleForm(forms.Form):
    """A group SOP: the groups, the content (text and attachments, as a campaign's), and
    the slot: once at a time, or every day / chosen weekdays at a time of day (Shanghai).
    Its rules (content, a future one-off time, at least one weekday) are
    group_schedule_save's."""

    name = forms.CharField(label=gettext_lazy("名称"), max_length=100)
    groups = _GroupChoices(
        label=gettext_lazy("客户群"),
        queryset=CustomerGroup.objects.none(),
        widget=forms.SelectMultiple(attrs={"size": 10}),
        help_text=gettext_lazy("群名 · 群主 · 人数。按住 Ctrl（Mac 上为 ⌘）可多选。"),
    )
    text = forms.CharField(
        label=gettext_lazy("内容"),
        required=False,
        max_length=MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    attachments = forms.CharField(widget=forms.HiddenInput, required=False)
    repeat = forms.ChoiceField(label=gettext_lazy("发送方式"), widget=forms.RadioSelect)
    send_at = forms.DateTimeField(
        label=gettext_lazy("发送时间（上海时间）"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    slot_time = forms.TimeField(
        label=gettext_lazy("每次发送时刻（上海时间）"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    weekdays = forms.TypedMultipleChoiceField(
        label=gettext_lazy("每周哪几天"),
        required=False,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
    )
    is_active = forms.BooleanField(label=gettext_lazy("启用"), required=False, initial=True)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["groups"].queryset = CustomerGroup.objects.filter(is_dismissed=False).order_by(
            "owner_userid", "name", "chat_id"
        )
        self.fields["repeat"].choices = [(k, str(v)) for k, v in REPEAT_LABELS.items()]
        self.fields["weekdays"].choices = [(k, str(v)) for k, v in WEEKDAY_LABELS]

    @classmethod
    def initial_from(cls, schedule: GroupSchedule) -> dict:
        return {
            "name": schedule.name,
            "groups": [group.pk for group in schedule.groups.all()],
            "text": schedule.text,
            "attachments": json.dumps(schedule.attachments, ensure_ascii=False),
            "repeat": schedule.repeat,
            "send_at": timezone.localtime(schedule.send_at) if schedule.send_at else None,
            "slot_time": schedule.slot_time,
            "weekdays": schedule.weekdays,
            "is_active": schedule.is_active,
        }

    def clean_name(self) -> str:
        return self.cleaned_data["name"].strip()

    def clean_attachments(self) -> list[dict]:
        return attachments_clean(self.cleaned_data["attachments"])

    def service_arguments(self) -> dict:
        """group_schedule_save's fields and group_ids (after is_valid())."""
        data = self.cleaned_data
        return {
            "fields": {
                "name": data["name"],
                "text": data["text"],
                "attachments": data["attachments"],
                "repeat": data["repeat"],
                "send_at": data["send_at"],
                "slot_time": data["slot_time"],
                "weekdays": data["weekdays"],
                "is_active": data["is_active"],
            },
            "group_ids": [group.pk for group in data["groups"]],
        }
