"""The dashboards' GET filters, shared by the pages, their exports and the API."""

from django import forms
from django.utils.translation import gettext_lazy as _

from analytics.dashboards import (
    CHANNELS,
    COHORT_BY,
    MAX_DAYS,
    MEMBER_CHOICES,
    Params,
    default_start,
    today,
)
from contacts.order_files import ORDER_CHANNEL_NAMES

PERIOD_NAMES = {"month": _("按月"), "week": _("按周")}
BY_NAMES = {"first_purchase": _("按首单"), "joined": _("按入会")}
MEMBER_NAMES = {"member": _("私域会员"), "non_member": _("非会员")}


class DashboardFilterForm(forms.Form):
    """Every field is optional: the window defaults to the last twelve calendar months
    (`default_months`; to today, Asia/Shanghai), the period to months, the rest to
    "all"."""

    start = forms.DateField(required=False, label=_("开始日期"))
    end = forms.DateField(required=False, label=_("结束日期"))
    period = forms.ChoiceField(
        required=False, choices=[("", "")] + list(PERIOD_NAMES.items()), label=_("周期")
    )
    by = forms.ChoiceField(
        required=False, choices=[("", "")] + list(BY_NAMES.items()), label=_("分群方式")
    )
    channel = forms.ChoiceField(
        required=False,
        choices=[("", "")] + [(code, ORDER_CHANNEL_NAMES[code]) for code in CHANNELS],
        label=_("渠道"),
    )
    member = forms.ChoiceField(
        required=False,
        choices=[("", "")] + [(key, MEMBER_NAMES[key]) for key in MEMBER_CHOICES],
        label=_("会员"),
    )
    store = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label=_("门店"))
    guide = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label=_("导购"))
    category = forms.ChoiceField(required=False, label=_("品类"))
    state = forms.ChoiceField(required=False, label=_("渠道码"))

    def __init__(self, data=None, *, options: dict, default_months: int = 12) -> None:
        super().__init__(data)
        self.default_months = default_months
        self.fields["store"].choices = [("", "")] + [(str(pk), n) for pk, n in options["stores"]]
        self.fields["guide"].choices = [("", "")] + [(str(pk), n) for pk, n in options["guides"]]
        self.fields["category"].choices = [("", "")] + [(c, c) for c in options["categories"]]
        # Options cached before channel codes were listed have none (until the next bump).
        states = options.get("states", [])
        self.fields["state"].choices = [("", "")] + [(c, c) for c in states]

    def clean(self) -> dict:
        data = super().clean()
        end = data.get("end") or today()
        start = data.get("start") or default_start(end, self.default_months)
        if start > end:
            raise forms.ValidationError(_("开始日期不能晚于结束日期。"))
        if (end - start).days > MAX_DAYS:
            raise forms.ValidationError(_("日期范围最长 5 年。"))
        data["start"], data["end"] = start, end
        return data

    def params(self) -> Params:
        """The parsed filters; the defaults when the form is unbound or invalid."""
        if not self.is_bound or not self.is_valid():
            return Params.default(months=self.default_months)
        data = self.cleaned_data
        return Params(
            start=data["start"],
            end=data["end"],
            period=data["period"] or "month",
            by=data["by"] or COHORT_BY[0],
            channel=data["channel"],
            member=data["member"],
            store=data["store"],
            guide=data["guide"],
            category=data["category"],
            state=data["state"],
        )
