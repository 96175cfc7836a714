"""The data behind each dashboard (and the API): one function per metric, of the
dashboard parameters only, its result cached under the current generation.

`METRICS` names each metric's compute function and the parameters it reads; a
result is keyed by exactly those, so a filter a metric ignores never splits its
cache. Everything returned is plain JSON data; labels and formatting are the
pages' business (`analytics.tables`).
"""

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import date, timedelta

from django.db.models import Q
from django.utils import timezone

from analytics import cache, comparisons, metrics
from analytics.clv import FitError
from analytics.metrics import SHANGHAI, Filters
from contacts.models import CustomerAttributeShare, Guide, Relationship, Store

logger = logging.getLogger(__name__)

CHANNELS = ("tmall", "jd", "douyin", "youzan", "miniapp", "pos", "other")
MEMBER_CHOICES = ("member", "non_member")
COHORT_BY = ("first_purchase", "joined")
SPLIT_ROWS = 20  # rows kept in each small split table (most buyers first)
LEADERBOARD_ROWS = 100
LTV_PERIODS = 24
MAX_DAYS = 5 * 366  # the longest window a dashboard computes


def today() -> date:
    return timezone.now().astimezone(SHANGHAI).date()


def default_start(end: date, months: int = 12) -> date:
    """The first day of `months` calendar months up to and including the end day's."""
    month = end.year * 12 + end.month - months
    return date(month // 12, month % 12 + 1, 1)


@dataclass(frozen=True)
class Params:
    """What a dashboard is asked for (the GET form's fields, parsed)."""

    start: date
    end: date
    period: str = "month"
    by: str = "first_purchase"
    channel: str = ""
    member: str = ""  # "", "member", "non_member"
    store: int | None = None
    guide: int | None = None
    category: str = ""
    state: str = ""  # a channel code (customer growth only)

    @classmethod
    def default(cls, end: date | None = None, months: int = 12) -> "Params":
        end = end or today()
        return cls(start=default_start(end, months), end=end)

    def filters(self) -> Filters:
        return Filters(
            channels=(self.channel,) if self.channel else (),
            category=self.category,
            member={"member": True, "non_member": False}.get(self.member),
            guide_id=self.guide,
            store_id=self.store,
        )

    def only(self, names: tuple[str, ...]) -> "Params":
        """These parameters kept, every other one at its default."""
        blank = Params(start=self.start, end=self.end)
        return replace(blank, **{name: getattr(self, name) for name in names})

    def as_dict(self, names: tuple[str, ...]) -> dict:
        return {
            field.name: getattr(self, field.name) for field in fields(self) if field.name in names
        }


FILTERS = ("channel", "member", "store", "guide", "category")


def _previous(start: date, end: date) -> tuple[date, date]:
    """The window of the same length just before [start, end]."""
    days = (end - start).days + 1
    return start - timedelta(days=days), start - timedelta(days=1)


def _label_keys(rows: list[dict], by: str) -> list[dict]:
    names: dict = {}
    ids = [row["key"] for row in rows]
    if by == "guide":
        names = dict(Guide.objects.filter(pk__in=ids).values_list("pk", "name"))
    elif by == "store":
        names = dict(Store.objects.filter(pk__in=ids).values_list("pk", "name"))
    for row in rows:
        row["label"] = names.get(row["key"], row["key"])
    return rows


def repurchase_data(p: Params) -> dict:
    filters = p.filters()
    splits = {}
    for by in comparisons.SPLITS:
        rows = comparisons.repurchase_split(start=p.start, end=p.end, by=by, filters=filters)
        limit = None if by in ("member", "channel") else SPLIT_ROWS
        splits[by] = {"rows": _label_keys(rows[:limit], by), "total_keys": len(rows)}
    return {
        "summary": metrics.repurchase(start=p.start, end=p.end, filters=filters),
        "trend": metrics.repurchase_trend(
            start=p.start, end=p.end, period=p.period, filters=filters
        ),
        "splits": splits,
    }


def returning_data(p: Params) -> dict:
    """回购率 of the window from the window before it, and per period from the period
    before it (each period clipped to the window)."""
    filters = p.filters()
    a_start, a_end = _previous(p.start, p.end)
    return {
        "summary": metrics.returning(
            a_start=a_start, a_end=a_end, b_start=p.start, b_end=p.end, filters=filters
        ),
        "trend": metrics.returning_trend(
            start=p.start, end=p.end, period=p.period, filters=filters
        ),
    }


def cohorts_data(p: Params) -> dict:
    return metrics.cohorts(by=p.by, period=p.period, start=p.start, end=p.end, filters=p.filters())


def conversion_data(p: Params) -> dict:
    overall = metrics.conversion(start=p.start, end=p.end)
    return {
        "overall": overall[0] if overall else None,
        "state": metrics.conversion(start=p.start, end=p.end, group="state"),
        "guide": metrics.conversion(start=p.start, end=p.end, group="guide"),
    }


def intervals_data(p: Params) -> dict:
    return {"categories": metrics.intervals(start=p.start, end=p.end)}


def ltv_data(p: Params) -> dict:
    return metrics.historical_ltv(
        period=p.period, start=p.start, end=p.end, periods=LTV_PERIODS, filters=p.filters()
    )


def rfm_data(p: Params) -> dict:
    return {**metrics.rfm(end=p.end), "trend": metrics.rfm_trend(end=p.end)}


def members_data(p: Params) -> dict:
    groups = comparisons.member_comparison(start=p.start, end=p.end)
    return {"groups": groups, "value": comparisons.member_value(groups)}


def guides_data(p: Params) -> dict:
    return {
        "guides": comparisons.guide_leaderboard(
            start=p.start, end=p.end, store_id=p.store, limit=LEADERBOARD_ROWS
        )
    }


def growth_data(p: Params) -> dict:
    return comparisons.customer_growth(
        start=p.start, end=p.end, guide_id=p.guide, store_id=p.store, state=p.state or None
    )


@dataclass(frozen=True)
class Metric:
    compute: Callable[[Params], dict]
    params: tuple[str, ...]  # the Params fields it reads
    default_months: int = 12  # the default window: this many calendar months to today


WINDOW = ("start", "end")
METRICS: dict[str, Metric] = {
    "repurchase": Metric(repurchase_data, (*WINDOW, "period", *FILTERS)),
    "returning": Metric(returning_data, (*WINDOW, "period", *FILTERS)),
    "cohorts": Metric(cohorts_data, (*WINDOW, "period", "by", *FILTERS)),
    "conversion": Metric(conversion_data, WINDOW),
    "intervals": Metric(intervals_data, WINDOW),
    # Two years by default, so the curves reach their 24 periods.
    "ltv": Metric(ltv_data, (*WINDOW, "period", *FILTERS), default_months=LTV_PERIODS),
    "rfm": Metric(rfm_data, ("end",)),
    "members": Metric(members_data, WINDOW),
    "guides": Metric(guides_data, (*WINDOW, "store")),
    "growth": Metric(growth_data, (*WINDOW, "guide", "store", "state")),
}


def result(name: str, params: Params, generation: int | None = None) -> dict:
    """The metric's cached result for these parameters (computed on a miss), in the current
    generation or the given one."""
    metric = METRICS[name]
    asked = params.only(metric.params)
    return cache.cached(
        name, asked.as_dict(metric.params), lambda: metric.compute(asked), generation
    )


def options(generation: int | None = None) -> dict:
    """The filter form's choices (stores, guides, categories), cached like a result."""

    def compute() -> dict:
        return {
            "stores": list(Store.objects.order_by("code").values_list("pk", "name")),
            "guides": list(
                Guide.objects.filter(Q(is_active=True) | Q(relationships__is_active=True))
                .distinct()
                .order_by("name", "pk")
                .values_list("pk", "name")
            ),
            # The categories customers bought (their facts), not the catalogue's: a
            # scan of attribute_share_value_idx, once per generation.
            "categories": list(
                CustomerAttributeShare.objects.filter(kind="category")
                .order_by("value")
                .values_list("value", flat=True)
                .distinct()
            ),
            # The channel codes customers were added through (relationship state index).
            "states": list(
                Relationship.objects.exclude(state="")
                .order_by("state")
                .values_list("state", flat=True)
                .distinct()
            ),
        }

    return cache.cached("options", {}, compute, generation)


# -- predicted LTV (analytics.predictions) ---------------------------------------------------

PREDICTED = "predicted_ltv"
PREDICTED_ROWS = 100  # the customers of highest predicted LTV, listed on the page
PREDICTED_MEANS = ("expected_purchases_90d", "probability_alive", "predicted_ltv_12m")


def predicted_ltv() -> dict | None:
    """The BG/NBD / Gamma-Gamma results of `analytics.predictions`, computed only by the
    refresh task (fitting is too slow for a page view) and read here from the cache; None
    while nothing has been computed."""
    return cache.stored(PREDICTED, {})


def predicted_ltv_compute(end: date, generation: int | None = None) -> dict | None:
    """Fit the models on purchases up to `end`, write each customer's predictions into
    their facts, and store the summary the LTV page shows."""
    from analytics.predictions import predict

    fitted = predict(calibration_end=end, store=True)
    rows = [row for row in fitted.rows if math.isfinite(row["predicted_ltv_12m"])]
    top = sorted(rows, key=lambda row: (-row["predicted_ltv_12m"], row["customer_id"]))

    def mean(key: str) -> float | None:
        return sum(row[key] for row in rows) / len(rows) if rows else None

    data = {
        "calibration_end": end,
        "customers": fitted.customers,
        "params": fitted.params,
        "means": {key: mean(key) for key in PREDICTED_MEANS},
        "columns": list(top[0]) if top else [],
        "rows": [list(row.values()) for row in top[:PREDICTED_ROWS]],
    }
    return cache.store(PREDICTED, {}, data, generation)


def precompute(generation: int, end: date | None = None) -> list[str]:
    """Compute every dashboard's default view (and the predictions when available) into
    this generation."""
    end = end or today()
    options(generation)
    done = []
    for name, metric in METRICS.items():
        result(name, Params.default(end, metric.default_months), generation)
        done.append(name)
    try:
        if predicted_ltv_compute(end, generation) is not None:
            done.append(PREDICTED)
    except FitError:  # too few buyers before `end` to fit: the LTV page says so
        logger.warning("predicted LTV: too little data to fit", exc_info=True)
    return done
