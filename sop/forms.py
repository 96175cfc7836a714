"""Forms of the SOP console: parse what operators type into the shapes sop.services takes.
The plan's rules (a trigger's parameters, a step's window, an audience that compiles)
are checked by `plan_save`; these forms only check that the input can be read."""

import json
import re
from datetime import time

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from scrm.web import ADDRESS_KEYS, is_web_address
from sop.models import ContactPolicy, SopPlan, SopStep, Touchpoint
from tagging.models import Tag

ID_SEPARATORS = re.compile(r"[,，、\s]+")
TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(:00)?$")
MAX_STEPS = 30
MAX_SCRIPT = 2000
ATTACHMENT_KEYS = ("title", "url", "pic_url", "appid", "page", "desc")

# The words of the SOP pages in the reader's language (the models keep the Chinese ones).
TRIGGER_LABELS = {
    SopPlan.Trigger.CONTACT_ADDED: gettext_lazy("添加为企业微信好友"),
    SopPlan.Trigger.FIRST_ORDER: gettext_lazy("首次下单"),
    SopPlan.Trigger.PAID_ORDER: gettext_lazy("每次支付订单"),
    SopPlan.Trigger.TAG_ADDED: gettext_lazy("被打上标签"),
    SopPlan.Trigger.DAYS_SINCE_PURCHASE: gettext_lazy("距最近购买 N 天"),
    SopPlan.Trigger.REPURCHASE_DUE: gettext_lazy("到了复购周期"),
    SopPlan.Trigger.BIRTHDAY: gettext_lazy("生日"),
    SopPlan.Trigger.MANUAL: gettext_lazy("手动加入"),
}
ACTION_LABELS = {
    SopStep.Action.MESSAGE: gettext_lazy("一对一消息"),
    SopStep.Action.MOMENTS_LIKE: gettext_lazy("朋友圈点赞"),
    SopStep.Action.MOMENTS_COMMENT: gettext_lazy("朋友圈评论"),
    SopStep.Action.GROUP_INVITE: gettext_lazy("邀请进群"),
    SopStep.Action.CALL: gettext_lazy("电话回访"),
}
STATUS_LABELS = {
    Touchpoint.Status.PLANNED: gettext_lazy("待触达"),
    Touchpoint.Status.TASK: gettext_lazy("待办"),
    Touchpoint.Status.DONE: gettext_lazy("已完成"),
    Touchpoint.Status.SKIPPED: gettext_lazy("已跳过"),
    Touchpoint.Status.EXPIRED: gettext_lazy("已过期"),
    Touchpoint.Status.SUPPRESSED: gettext_lazy("被规则拦截"),
    Touchpoint.Status.STOPPED: gettext_lazy("已停止"),
}
ENROLLMENT_LABELS = {"active": gettext_lazy("进行中"), "stopped": gettext_lazy("已停止")}
# Reasons written by sop.scheduling (suppressed, stopped) and sop.services.plan_save.
REASON_LABELS = {
    "complaint": gettext_lazy("投诉后免打扰"),
    "another_plan_today": gettext_lazy("当天已有其他计划"),
    "daily_cap": gettext_lazy("超过每日上限"),
    "weekly_cap": gettext_lazy("超过每周上限"),
    "opted_out": gettext_lazy("客户拒绝触达"),
    "contact_deleted": gettext_lazy("好友已删除"),
    "purchased": gettext_lazy("客户已下单"),
    "tag_added": gettext_lazy("加上了停止标签"),
    "tag_removed": gettext_lazy("移除了停止标签"),
    "plan_paused": gettext_lazy("计划已停用"),
    "step_removed": gettext_lazy("步骤已删除"),
    "merged_duplicate": gettext_lazy("客户合并后与已有任务重复"),
}
SUPPRESSION_REASONS = ["complaint", "another_plan_today", "daily_cap", "weekly_cap"]
STOP_REASONS = [
    "opted_out",
    "contact_deleted",
    "purchased",
    "tag_added",
    "tag_removed",
    "plan_paused",
    "step_removed",
    "merged_duplicate",
]
# What each script variable of sop.services.VARIABLES is filled with.
VARIABLE_LABELS = {
    "{称呼}": gettext_lazy("备注名，没有备注时用客户名"),
    "{客户姓名}": gettext_lazy("客户名"),
    "{最近购买商品}": gettext_lazy("最近一单的第一件商品"),
    "{导购姓名}": gettext_lazy("导购的名字"),
    "{门店}": gettext_lazy("导购所在门店"),
}
ATTACHMENT_TYPES = {
    "image": gettext_lazy("图片"),
    "link": gettext_lazy("链接"),
    "miniprogram": gettext_lazy("小程序"),
}


def reason_label(reason: str) -> str:
    return str(REASON_LABELS.get(reason, reason or "—"))


def _tags():
    return Tag.objects.select_related("group").order_by("group__order", "group_id", "order", "id")


class _TagChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: Tag) -> str:
        return f"{obj.group.label} / {obj.label}"


def _time(value, number: int) -> time:
    if isinstance(value, time):
        return value
    match = TIME.match(str(value or "").strip())
    if not match:
        raise forms.ValidationError(
            _("第 %(n)s 步：时间应写成 时:分，例如 10:00。") % {"n": number}
        )
    return time(int(match.group(1)), int(match.group(2)))


def _count(value, number: int, label: str) -> int:
    try:
        count = int(value or 0)
    except (TypeError, ValueError):
        count = -1
    if count < 0 or count > 3650:
        raise forms.ValidationError(
            _("第 %(n)s 步：%(label)s应是 0 到 3650 之间的整数。") % {"n": number, "label": label}
        )
    return count


def attachments_clean(items, number: int) -> list[dict]:
    """The attachments of a step: a list of {type, title, url, pic_url, appid, page}."""
    if items in (None, ""):
        return []
    if not isinstance(items, list):
        raise forms.ValidationError(_("第 %(n)s 步：附件应是一个列表。") % {"n": number})
    cleaned = []
    for item in items:
        if not isinstance(item, dict) or item.get("type") not in ATTACHMENT_TYPES:
            raise forms.ValidationError(
                _("第 %(n)s 步：附件类型只能是图片、链接或小程序。") % {"n": number}
            )
        entry = {"type": item["type"]}
        for key in ATTACHMENT_KEYS:
            value = str(item.get(key) or "").strip()
            if value and key in ADDRESS_KEYS and not is_web_address(value):
                raise forms.ValidationError(
                    _("第 %(n)s 步：附件的地址要以 http:// 或 https:// 开头：%(value)s")
                    % {"n": number, "value": value}
                )
            if value:
                entry[key] = value[:500]
        cleaned.append(entry)
    return cleaned


def steps_clean(raw) -> list[dict]:
    """A plan's steps as plan_save takes them. An unknown action and a window that ends
    before it starts are passed on: plan_save refuses them with its own reason."""
    if not isinstance(raw, list):
        raise forms.ValidationError(_("步骤应是一个列表。"))
    if len(raw) > MAX_STEPS:
        raise forms.ValidationError(_("一个计划最多 %(n)s 个步骤。") % {"n": MAX_STEPS})
    steps = []
    for number, step in enumerate(raw, start=1):
        if not isinstance(step, dict):
            raise forms.ValidationError(_("第 %(n)s 步的格式不对。") % {"n": number})
        script = str(step.get("script") or "")
        if len(script) > MAX_SCRIPT:
            raise forms.ValidationError(
                _("第 %(n)s 步：话术最多 %(max)s 个字。") % {"n": number, "max": MAX_SCRIPT}
            )
        step_id = step.get("id")
        if step_id is not None and (not isinstance(step_id, int) or isinstance(step_id, bool)):
            raise forms.ValidationError(_("第 %(n)s 步的格式不对。") % {"n": number})
        steps.append(
            {
                "id": step_id,
                "offset_days": _count(step.get("offset_days"), number, _("第几天")),
                "offset_hours": _count(step.get("offset_hours"), number, _("小时")),
                "window_start": _time(step.get("window_start", "10:00"), number),
                "window_end": _time(step.get("window_end", "21:00"), number),
                "action": str(step.get("action") or SopStep.Action.MESSAGE),
                "script": script,
                "attachments": attachments_clean(step.get("attachments"), number),
                "is_automatic": bool(step.get("is_automatic")),
            }
        )
    return steps


def steps_json(steps) -> str:
    """Saved steps (or cleaned dicts) as the editor's JSON."""
    rows = []
    for step in steps:
        get = step.get if isinstance(step, dict) else lambda name, s=step: getattr(s, name)
        rows.append(
            {
                "id": get("id"),
                "offset_days": get("offset_days"),
                "offset_hours": get("offset_hours"),
                "window_start": get("window_start").strftime("%H:%M"),
                "window_end": get("window_end").strftime("%H:%M"),
                "action": get("action"),
                "script": get("script"),
                "attachments": get("attachments") or [],
                "is_automatic": get("is_automatic"),
            }
        )
    return json.dumps(rows, ensure_ascii=False)


class PlanForm(forms.Form):
    """A plan: what triggers it (with its parameters), who it is for (the audience, in
    tagging's rule language, written by tagging's visual builder), its priority, when it
    stops, and its steps (JSON written by the step editor)."""

    name = forms.CharField(label=gettext_lazy("名称"), max_length=100)
    description = forms.CharField(label=gettext_lazy("说明"), max_length=300, required=False)
    # A select of the known triggers; an unknown one is refused by plan_save.
    trigger = forms.CharField(label=gettext_lazy("触发条件"), max_length=32, widget=forms.Select)
    trigger_state = forms.CharField(
        label=gettext_lazy("渠道活码 state"),
        max_length=64,
        required=False,
        help_text=gettext_lazy("只对带这个 state 的活码添加生效；留空为任何添加。"),
    )
    trigger_tag = _TagChoice(
        label=gettext_lazy("标签"),
        queryset=Tag.objects.none(),
        required=False,
        empty_label=gettext_lazy("— 选择标签 —"),
    )
    trigger_days = forms.IntegerField(label=gettext_lazy("天数"), required=False)
    # Named as in the rule editor: tagging/rule_editor.js reads textarea[name=condition].
    condition = forms.CharField(
        label=gettext_lazy("人群条件（JSON）"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
    )
    priority = forms.IntegerField(
        label=gettext_lazy("优先级"),
        initial=0,
        min_value=-1000,
        max_value=1000,
        help_text=gettext_lazy("同一位客户同一天只触达一个计划：优先级高的计划优先。"),
    )
    is_active = forms.BooleanField(label=gettext_lazy("启用"), required=False, initial=True)
    stop_on_purchase = forms.BooleanField(label=gettext_lazy("客户下单后停止"), required=False)
    stop_on_contact_deleted = forms.BooleanField(
        label=gettext_lazy("删除好友后停止"), required=False, initial=True
    )
    stop_on_tag_added = _TagChoice(
        label=gettext_lazy("被打上这个标签后停止"),
        queryset=Tag.objects.none(),
        required=False,
        empty_label=gettext_lazy("— 不停止 —"),
    )
    stop_on_tag_removed = _TagChoice(
        label=gettext_lazy("这个标签被移除后停止"),
        queryset=Tag.objects.none(),
        required=False,
        empty_label=gettext_lazy("— 不停止 —"),
    )
    steps = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["trigger"].widget.choices = [
            (value, str(label)) for value, label in TRIGGER_LABELS.items()
        ]
        for name in ("trigger_tag", "stop_on_tag_added", "stop_on_tag_removed"):
            self.fields[name].queryset = _tags()

    @classmethod
    def initial_from(cls, plan: SopPlan, steps) -> dict:
        params = plan.trigger_params or {}
        return {
            "name": plan.name,
            "description": plan.description,
            "trigger": plan.trigger,
            "trigger_state": params.get("state", ""),
            "trigger_tag": params.get("tag"),
            "trigger_days": params.get("days"),
            "condition": json.dumps(plan.audience or {"all": []}, ensure_ascii=False, indent=2),
            "priority": plan.priority,
            "is_active": plan.is_active,
            "stop_on_purchase": plan.stop_on_purchase,
            "stop_on_contact_deleted": plan.stop_on_contact_deleted,
            "stop_on_tag_added": plan.stop_on_tag_added_id,
            "stop_on_tag_removed": plan.stop_on_tag_removed_id,
            "steps": steps_json(steps),
        }

    def clean_name(self) -> str:
        return self.cleaned_data["name"].strip()

    def clean_condition(self):
        text = self.cleaned_data["condition"].strip()
        if not text:
            return None
        try:
            condition = json.loads(text)
        except ValueError as error:
            raise forms.ValidationError(
                _("人群条件不是有效的 JSON：%(error)s") % {"error": error}
            ) from None
        # The builder's empty group means "no condition": everyone may be enrolled.
        if condition in ({"all": []}, {}, None):
            return None
        return condition

    def clean_steps(self) -> list[dict]:
        try:
            raw = json.loads(self.cleaned_data["steps"] or "[]")
        except ValueError:
            raise forms.ValidationError(_("步骤的数据无法读取，请刷新页面后重试。")) from None
        return steps_clean(raw)

    def trigger_params(self) -> dict:
        data = self.cleaned_data
        trigger = data.get("trigger")
        if trigger == SopPlan.Trigger.CONTACT_ADDED:
            return {"state": data.get("trigger_state", "")}
        if trigger == SopPlan.Trigger.TAG_ADDED:
            return {"tag": data["trigger_tag"].pk} if data.get("trigger_tag") else {}
        if trigger == SopPlan.Trigger.DAYS_SINCE_PURCHASE:
            days = data.get("trigger_days")
            return {"days": days} if days is not None else {}
        return {}

    def plan_fields(self) -> dict:
        """The plan's own fields, as plan_save takes them (after is_valid())."""
        data = self.cleaned_data
        return {
            "name": data["name"],
            "description": data["description"],
            "trigger": data["trigger"],
            "trigger_params": self.trigger_params(),
            "audience": data["condition"],
            "priority": data["priority"],
            "is_active": data["is_active"],
            "stop_on_purchase": data["stop_on_purchase"],
            "stop_on_contact_deleted": data["stop_on_contact_deleted"],
            "stop_on_tag_added": data["stop_on_tag_added"],
            "stop_on_tag_removed": data["stop_on_tag_removed"],
        }


class EnrollForm(forms.Form):
    """Manual enrolment: customer ids pasted, or every customer carrying a tag."""

    customer_ids = forms.CharField(
        label=gettext_lazy("客户 ID"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "1001, 1002, 1003"}),
        help_text=gettext_lazy("逗号、空格或换行分隔"),
    )
    tag = _TagChoice(
        label=gettext_lazy("或：有这个标签的全部客户"),
        queryset=Tag.objects.none(),
        required=False,
        empty_label=gettext_lazy("— 不按标签 —"),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tag"].queryset = _tags()

    def clean_customer_ids(self) -> list[int]:
        parts = [part for part in ID_SEPARATORS.split(self.cleaned_data["customer_ids"]) if part]
        bad = [part for part in parts if not part.isdecimal()]
        if bad:
            raise forms.ValidationError(
                _("客户 ID 只能是数字：%(bad)s") % {"bad": "、".join(bad[:5])}
            )
        return sorted({int(part) for part in parts})

    def clean(self) -> dict:
        cleaned = super().clean()
        ids, tag = cleaned.get("customer_ids"), cleaned.get("tag")
        if not self.errors and not ids and tag is None:
            raise forms.ValidationError(_("请填写客户 ID，或选择一个标签。"))
        if ids and tag is not None:
            raise forms.ValidationError(_("客户 ID 和标签只选一种。"))
        return cleaned


# -- the contact policy ---------------------------------------------------------------------

POLICY_FIELDS = [
    "max_per_day",
    "max_per_week",
    "quiet_start",
    "quiet_end",
    "complaint_tag",
    "complaint_days",
    "morning_reminder_at",
    "overdue_after_minutes",
    "escalate_after_minutes",
]
POLICY_LABELS = {
    "max_per_day": gettext_lazy("每位客户每天最多触达"),
    "max_per_week": gettext_lazy("每位客户每周最多触达"),
    "quiet_start": gettext_lazy("免打扰开始"),
    "quiet_end": gettext_lazy("免打扰结束"),
    "complaint_tag": gettext_lazy("投诉标签"),
    "complaint_days": gettext_lazy("投诉后多少天内不触达"),
    "morning_reminder_at": gettext_lazy("每日提醒时间"),
    "overdue_after_minutes": gettext_lazy("到期多少分钟后算逾期"),
    "escalate_after_minutes": gettext_lazy("到期多少分钟后上报店长"),
}


def policy_problems(values: dict) -> list[tuple[str, str]]:
    """What is wrong with a contact policy as a whole: (field, reason) pairs. The form and
    the API serializer both ask this, so the page and the API refuse the same values."""
    problems = []
    day, week = values.get("max_per_day"), values.get("max_per_week")
    if day is not None and day < 1:
        problems.append(("max_per_day", _("每天至少允许触达 1 次，否则任何任务都发不出去。")))
    if day is not None and week is not None and week < day:
        problems.append(("max_per_week", _("每周上限不能小于每天上限。")))
    overdue, escalate = values.get("overdue_after_minutes"), values.get("escalate_after_minutes")
    if overdue is not None and overdue < 1:
        problems.append(("overdue_after_minutes", _("逾期时间至少 1 分钟。")))
    if overdue is not None and escalate is not None and escalate < overdue:
        problems.append(("escalate_after_minutes", _("上报店长的时间不能早于算作逾期的时间。")))
    return problems


class PolicyForm(forms.ModelForm):
    """The brand's contact policy. Equal quiet start and end mean no quiet hours."""

    complaint_tag = _TagChoice(
        label=POLICY_LABELS["complaint_tag"],
        queryset=Tag.objects.none(),
        required=False,
        empty_label=gettext_lazy("— 不设投诉标签 —"),
    )

    class Meta:
        model = ContactPolicy
        fields = POLICY_FIELDS
        widgets = {
            "quiet_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "quiet_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "morning_reminder_at": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["complaint_tag"].queryset = _tags()
        for name, label in POLICY_LABELS.items():
            self.fields[name].label = label
        self.fields["quiet_end"].help_text = gettext_lazy(
            "开始和结束相同表示不设免打扰；可以跨过零点，例如 21:30 至 09:00。"
        )
        self.fields["complaint_days"].help_text = gettext_lazy(
            "客户被打上投诉标签后这么多天内，所有触达都会被拦截。"
        )

    def clean(self) -> dict:
        cleaned = super().clean()
        for name, reason in policy_problems(cleaned):
            if name not in self.errors:
                self.add_error(name, reason)
        return cleaned
