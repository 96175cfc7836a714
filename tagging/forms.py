"""Forms of the tag pages: parse and validate what operators type; the views save through
tagging.services."""

import json
import re

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from contacts.order_files import ORDER_CHANNELS
from tagging.models import TagGroup
from tagging.selectors import editable_groups

COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
LIST_SEPARATORS = re.compile(r"[,，、\s]+")
MAX_BOUNDS = 10


def _color(value: str) -> str:
    if not COLOR.match(value):
        raise forms.ValidationError(_("颜色应写成 #RRGGBB，例如 #1677ff。"))
    return value.lower()


def _group_choice(form: forms.Form) -> None:
    """A tag goes into a chosen group or a new one named here; system groups are refused
    (their segment owns every tag in them)."""
    group, new_group = form.cleaned_data.get("group"), form.cleaned_data.get("new_group", "")
    if group is None and not new_group:
        form.add_error("group", _("请选择标签组，或填写新标签组的名称。"))
    elif group is not None and new_group:
        form.add_error("new_group", _("已选择标签组时不要再填写新标签组。"))
    elif new_group and TagGroup.objects.filter(name=new_group).exclude(system_key="").exists():
        form.add_error(
            "new_group", _("「%(name)s」是系统标签组，不能放入自建标签。") % {"name": new_group}
        )


class _GroupFields(forms.Form):
    name = forms.CharField(label=gettext_lazy("名称"), max_length=30)
    group = forms.ModelChoiceField(
        label=gettext_lazy("标签组"),
        queryset=TagGroup.objects.none(),
        required=False,
        empty_label=gettext_lazy("— 新建标签组 —"),
    )
    new_group = forms.CharField(label=gettext_lazy("新标签组名称"), max_length=30, required=False)
    color = forms.CharField(
        label=gettext_lazy("颜色"),
        max_length=7,
        initial="#1677ff",
        widget=forms.TextInput(attrs={"type": "color"}),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["group"].queryset = editable_groups()

    def clean_name(self) -> str:
        return self.cleaned_data["name"].strip()

    def clean_new_group(self) -> str:
        return self.cleaned_data["new_group"].strip()

    def clean_color(self) -> str:
        return _color(self.cleaned_data["color"])

    def clean(self) -> dict:
        cleaned = super().clean()
        _group_choice(self)
        return cleaned


class RuleForm(_GroupFields):
    """A rule tag: its name, group, colour, whether it is active, and its condition (JSON,
    written by the visual builder or by hand)."""

    is_active = forms.BooleanField(label=gettext_lazy("启用"), required=False, initial=True)
    condition = forms.CharField(
        label=gettext_lazy("条件（JSON）"),
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false"}),
    )

    def clean_condition(self):
        try:
            condition = json.loads(self.cleaned_data["condition"])
        except ValueError as error:
            raise forms.ValidationError(
                _("条件不是有效的 JSON：%(error)s") % {"error": error}
            ) from None
        if not isinstance(condition, dict):
            raise forms.ValidationError(_("规则条件应是一个 JSON 对象"))
        return condition


class ManualTagForm(_GroupFields):
    """A tag operators give and take away by hand."""

    description = forms.CharField(label=gettext_lazy("说明"), max_length=200, required=False)


# -- system tag settings ------------------------------------------------------------------


def _int_list(value: str, *, label: str) -> list[int]:
    parts = [part for part in LIST_SEPARATORS.split(value.strip()) if part]
    if not parts:
        raise forms.ValidationError(_("%(label)s至少要有一个数。") % {"label": label})
    if len(parts) > MAX_BOUNDS:
        raise forms.ValidationError(
            _("%(label)s最多 %(n)s 个数。") % {"label": label, "n": MAX_BOUNDS}
        )
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        raise forms.ValidationError(
            _("%(label)s只能是用逗号分隔的整数。") % {"label": label}
        ) from None
    if any(number < 1 for number in numbers):
        raise forms.ValidationError(_("%(label)s中的每个数都应是正整数。") % {"label": label})
    if any(low >= high for low, high in zip(numbers, numbers[1:], strict=False)):
        raise forms.ValidationError(_("%(label)s应从小到大排列，且不重复。") % {"label": label})
    return numbers


def _channel_list(value: str, *, label: str) -> list[str]:
    channels = [part.lower() for part in LIST_SEPARATORS.split(value.strip()) if part]
    if not channels:
        raise forms.ValidationError(_("%(label)s至少要有一个渠道。") % {"label": label})
    unknown = [channel for channel in channels if channel not in ORDER_CHANNELS]
    if unknown:
        raise forms.ValidationError(
            _("未知的渠道：%(unknown)s（可用：%(known)s）")
            % {"unknown": "、".join(unknown), "known": "、".join(ORDER_CHANNELS)}
        )
    return sorted(set(channels), key=channels.index)


def _share(label) -> forms.FloatField:
    return forms.FloatField(
        label=label,
        max_value=1,
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0", "max": "1"}),
    )


class SystemTagSettingsForm(forms.Form):
    """The thresholds of tagging.system.DEFAULTS, one input each; `values()` gives them in
    the shape SystemTagSettings.values keeps."""

    lifecycle_sleeping_after_days = forms.IntegerField(
        label=gettext_lazy("沉睡：距最近购买超过（天）"), min_value=1
    )
    lifecycle_lost_after_days = forms.IntegerField(
        label=gettext_lazy("流失：距最近购买超过（天）"), min_value=1
    )
    lifecycle_loyal_min_purchase_days = forms.IntegerField(
        label=gettext_lazy("忠诚客：购买天数至少"), min_value=2
    )
    rfm_window_days = forms.IntegerField(
        label=gettext_lazy("RFM 统计窗口（天）"), min_value=1, max_value=3650
    )
    rfm_recency_days = forms.IntegerField(
        label=gettext_lazy("R 阈值：最近购买在（天）内"), min_value=1, required=False
    )
    rfm_frequency = forms.FloatField(label=gettext_lazy("F 阈值：购买天数超过"), required=False)
    rfm_monetary = forms.FloatField(
        label=gettext_lazy("M 阈值：净销售额超过（元）"), required=False
    )
    preference_min_share = _share(gettext_lazy("偏好：占比至少（0–1）"))
    preference_min_lines = forms.IntegerField(label=gettext_lazy("偏好：购买件数至少"), min_value=1)
    frequency_bands = forms.CharField(label=gettext_lazy("购买频次区间下限"), max_length=100)
    cycle_bounds = forms.CharField(label=gettext_lazy("复购周期区间边界（天）"), max_length=100)
    channels_private = forms.CharField(label=gettext_lazy("私域渠道"), max_length=200)
    channels_public = forms.CharField(label=gettext_lazy("公域渠道"), max_length=200)
    channels_min_share = _share(gettext_lazy("渠道偏好：占比至少（0.5–1）"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in ("rfm_recency_days", "rfm_frequency", "rfm_monetary"):
            self.fields[name].help_text = gettext_lazy("留空表示取所有买家的平均值")
        self.fields["frequency_bands"].help_text = gettext_lazy("逗号分隔，从小到大，例如 1,2,3,5")
        self.fields["cycle_bounds"].help_text = gettext_lazy(
            "逗号分隔，从小到大，例如 30,60,90,180"
        )
        self.fields["channels_private"].help_text = gettext_lazy("渠道代码，逗号分隔")
        self.fields["channels_public"].help_text = gettext_lazy("渠道代码，逗号分隔")

    @classmethod
    def initial_from(cls, settings: dict) -> dict:
        return {
            "lifecycle_sleeping_after_days": settings["lifecycle"]["sleeping_after_days"],
            "lifecycle_lost_after_days": settings["lifecycle"]["lost_after_days"],
            "lifecycle_loyal_min_purchase_days": settings["lifecycle"]["loyal_min_purchase_days"],
            "rfm_window_days": settings["rfm"]["window_days"],
            "rfm_recency_days": settings["rfm"]["recency_days"],
            "rfm_frequency": settings["rfm"]["frequency"],
            "rfm_monetary": settings["rfm"]["monetary"],
            "preference_min_share": settings["preference"]["min_share"],
            "preference_min_lines": settings["preference"]["min_lines"],
            "frequency_bands": ", ".join(str(n) for n in settings["frequency_bands"]),
            "cycle_bounds": ", ".join(str(n) for n in settings["cycle_bounds"]),
            "channels_private": ", ".join(settings["channels"]["private"]),
            "channels_public": ", ".join(settings["channels"]["public"]),
            "channels_min_share": settings["channels"]["min_share"],
        }

    def clean_preference_min_share(self) -> float:
        share = self.cleaned_data["preference_min_share"]
        if share <= 0:
            raise forms.ValidationError(_("占比应大于 0 且不超过 1，例如 0.5 表示一半。"))
        return share

    def clean_channels_min_share(self) -> float:
        share = self.cleaned_data["channels_min_share"]
        if share <= 0.5:
            raise forms.ValidationError(
                _("应大于 0.5 且不超过 1：否则同一位客户会既算私域为主又算公域为主。")
            )
        return share

    def clean_rfm_frequency(self) -> float | None:
        return self._positive_or_blank("rfm_frequency")

    def clean_rfm_monetary(self) -> float | None:
        return self._positive_or_blank("rfm_monetary")

    def _positive_or_blank(self, name: str) -> float | None:
        value = self.cleaned_data[name]
        if value is not None and value <= 0:
            raise forms.ValidationError(_("应是正数，或留空表示取平均值。"))
        return value

    def clean_frequency_bands(self) -> list[int]:
        return _int_list(self.cleaned_data["frequency_bands"], label=_("购买频次区间"))

    def clean_cycle_bounds(self) -> list[int]:
        return _int_list(self.cleaned_data["cycle_bounds"], label=_("复购周期区间"))

    def clean_channels_private(self) -> list[str]:
        return _channel_list(self.cleaned_data["channels_private"], label=_("私域渠道"))

    def clean_channels_public(self) -> list[str]:
        return _channel_list(self.cleaned_data["channels_public"], label=_("公域渠道"))

    def clean(self) -> dict:
        cleaned = super().clean()
        sleeping, lost = (
            cleaned.get("lifecycle_sleeping_after_days"),
            cleaned.get("lifecycle_lost_after_days"),
        )
        if sleeping is not None and lost is not None and lost <= sleeping:
            self.add_error(
                "lifecycle_lost_after_days", _("流失的天数应大于沉睡的天数（先沉睡，后流失）。")
            )
        private, public = cleaned.get("channels_private"), cleaned.get("channels_public")
        if private and public and set(private) & set(public):
            both = "、".join(sorted(set(private) & set(public)))
            self.add_error(
                "channels_public",
                _("渠道不能既是私域又是公域：%(channels)s") % {"channels": both},
            )
        return cleaned

    def values(self) -> dict:
        """The settings in the shape of tagging.system.DEFAULTS (after is_valid())."""
        c = self.cleaned_data
        return {
            "lifecycle": {
                "sleeping_after_days": c["lifecycle_sleeping_after_days"],
                "lost_after_days": c["lifecycle_lost_after_days"],
                "loyal_min_purchase_days": c["lifecycle_loyal_min_purchase_days"],
            },
            "rfm": {
                "window_days": c["rfm_window_days"],
                "recency_days": c["rfm_recency_days"],
                "frequency": c["rfm_frequency"],
                "monetary": c["rfm_monetary"],
            },
            "preference": {
                "min_share": c["preference_min_share"],
                "min_lines": c["preference_min_lines"],
            },
            "frequency_bands": c["frequency_bands"],
            "cycle_bounds": c["cycle_bounds"],
            "channels": {
                "private": c["channels_private"],
                "public": c["channels_public"],
                "min_share": c["channels_min_share"],
            },
        }
