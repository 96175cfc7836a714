"""The console customer list's filters by what customers bought (and by our own tags)."""

from datetime import timedelta

from django import forms
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.order_files import ORDER_CHANNEL_NAMES, ORDER_CHANNELS
from contacts.order_files.lines import SHANGHAI
from contacts.selectors import TagFilter

MAX_DAYS = 3650  # as tag rules' windows


class PurchaseFilterForm(forms.Form):
    """Every field is optional. A value that does not parse filters nothing: `apply`
    uses the valid ones and the page names the others (`errors`)."""

    own_tag = forms.TypedChoiceField(
        required=False, coerce=int, empty_value=None, label=_("本平台标签")
    )
    revenue_min = forms.DecimalField(
        required=False, min_value=0, max_digits=12, decimal_places=2, label=_("净销售额不低于")
    )
    revenue_max = forms.DecimalField(
        required=False, min_value=0, max_digits=12, decimal_places=2, label=_("净销售额不高于")
    )
    purchase_days_min = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_DAYS, label=_("购买天数至少")
    )
    bought_within = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_DAYS, label=_("近 N 天内购买过")
    )
    dormant_for = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_DAYS, label=_("N 天以上未购买")
    )
    channel = forms.ChoiceField(
        required=False,
        choices=[("", "")] + [(code, ORDER_CHANNEL_NAMES[code]) for code in ORDER_CHANNELS],
        label=_("购买渠道"),
    )
    member_since = forms.DateField(required=False, label=_("入会不早于"))

    def __init__(self, data, *, tag_filter: TagFilter | None) -> None:
        super().__init__(data)
        self.tag_filter = tag_filter
        tags = tag_filter.choices() if tag_filter else []
        self.fields["own_tag"].choices = [("", "")] + tags

    def apply(self, queryset: QuerySet) -> QuerySet:
        """The customers passing every valid filter. Days count as tag rules do: within
        N days is a last purchase day in the N days up to and including today (Asia/
        Shanghai); N days dormant is a buyer whose last purchase day is before those (one
        who never bought is not dormant, just not a buyer)."""
        self.is_valid()
        data = self.cleaned_data
        today = timezone.now().astimezone(SHANGHAI).date()
        if self.tag_filter and (tag_id := data.get("own_tag")) is not None:
            queryset = queryset.filter(pk__in=self.tag_filter.carriers(tag_id))
        if (low := data.get("revenue_min")) is not None:
            queryset = queryset.filter(facts__net_revenue__gte=low)
        if (high := data.get("revenue_max")) is not None:
            queryset = queryset.filter(facts__net_revenue__lte=high)
        if (days := data.get("purchase_days_min")) is not None:
            queryset = queryset.filter(facts__purchase_days__gte=days)
        if (within := data.get("bought_within")) is not None:
            queryset = queryset.filter(facts__last_purchase_on__gt=today - timedelta(days=within))
        if (dormant := data.get("dormant_for")) is not None:
            queryset = queryset.filter(facts__last_purchase_on__lte=today - timedelta(days=dormant))
        if channel := data.get("channel"):
            queryset = queryset.filter(facts__channels__contains=[channel])
        if since := data.get("member_since"):
            queryset = queryset.filter(joined_at__date__gte=since)
        return queryset
