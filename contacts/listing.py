"""The customer lists' filters, from a query string: the console's list (its page, its
export, and tagging the customers it selects) and the guide's list share them."""

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.translation import gettext as _

from contacts import selectors
from contacts.forms import PurchaseFilterForm
from contacts.models import Customer, Guide, searched_phone
from scrm.limits import HourlyLimit
from scrm.roles import Perm

# A guide sees a customer's phone masked (138****5601). Searching the 10,000 numbers it
# may be, one by one, would give the full number away: a guide's phone searches are
# limited. Console users' are not (they are the brand's staff).
GUIDE_PHONE_SEARCHES = HourlyLimit("guide-phone-search", per_hour=30)


def guide_phone_search_refused(user, text: str) -> str | None:
    """Counts a guide's search by phone number; past the limit, the refusal to show."""
    if user.has_perm(Perm.VIEW_CONSOLE) or not searched_phone(text):
        return None
    if GUIDE_PHONE_SEARCHES.reached(user):
        return _(
            "一小时内最多按手机号搜索 %(most)s 次，%(minutes)s 分钟后可以再搜；"
            "按姓名或订单号搜索不受限制。"
        ) % {
            "most": GUIDE_PHONE_SEARCHES.per_hour,
            "minutes": GUIDE_PHONE_SEARCHES.minutes_left(user),
        }
    GUIDE_PHONE_SEARCHES.count(user)
    return None


def filtered_customers(params: QueryDict, queryset):
    if text := params.get("q", "").strip():
        queryset = queryset.search(text)
    # Guide and store come from the page's selects: anything else is a made-up URL (404,
    # as on the tag page), not a filter to explain.
    if guide_id := params.get("guide"):
        if not guide_id.isdecimal():
            raise Http404("bad guide")
        queryset = queryset.followed_by(get_object_or_404(Guide, pk=int(guide_id)))
    if store_id := params.get("store"):
        if not store_id.isdecimal():
            raise Http404("bad store")
        queryset = queryset.in_store(int(store_id))
    if tag := params.get("tag"):
        queryset = queryset.with_corp_tag(tag)
    status = params.get("status", "")
    if status == "member":
        queryset = queryset.filter(is_member=True)
    elif status == "churned":
        queryset = queryset.churned()
    return queryset


def console_customers(params: QueryDict):
    """The console list's customers (its page and its export): the filters it shares
    with the guide's list, then those by purchases and by our own tags."""
    form = PurchaseFilterForm(params, tag_filter=selectors.tag_filter())
    return form.apply(filtered_customers(params, Customer.objects.unmerged())), form


def filters_refused(request: HttpRequest, query: QueryDict) -> HttpResponse | None:
    """A filter the list ignores (named on the page) would make an export or a tagging
    of the whole list: refused, back to the list, which says which filter to correct."""
    if not console_customers(query)[1].errors:
        return None
    messages.error(request, _("筛选条件有误（见列表上方），请改正后再导出或加标签。"))
    return redirect(f"{reverse('customers')}?{query.urlencode()}")
