"""Keeping the dashboards fresh: after order imports (debounced, through the customer
facts listener) and nightly, the default views are computed into the next cache
generation on the `analytics` queue, which is then published: readers keep the previous
results until the new ones are all ready."""

import time

from django.core.cache import cache as django_cache
from django.db import transaction

from analytics import cache, dashboards

REFRESH_SCHEDULED = "analytics:refresh-scheduled"
# A burst of imports (facts refreshed batch by batch) costs one recomputation, this long
# after the first of them.
REFRESH_DEBOUNCE_SECONDS = 60


def dashboards_mark_stale(customer_ids: list[int]) -> None:
    """Facts listener (`contacts.facts`), called inside the transaction that refreshed
    these customers' facts: schedule one refresh once it commits."""
    transaction.on_commit(dashboards_schedule_refresh)


def dashboards_schedule_refresh() -> None:
    """Enqueue one refresh a little later, unless one is already waiting."""
    from analytics.tasks import refresh_dashboards

    if django_cache.add(REFRESH_SCHEDULED, 1, timeout=REFRESH_DEBOUNCE_SECONDS + 60):
        refresh_dashboards.apply_async(countdown=REFRESH_DEBOUNCE_SECONDS)


def dashboards_refresh() -> dict:
    """Compute the default view of every dashboard into the next generation, then publish
    it (every reader moves to the fresh keys at once). Returns what it did."""
    started = time.monotonic()
    django_cache.delete(REFRESH_SCHEDULED)  # changes from now on schedule another refresh
    generation = cache.generation() + 1
    computed = dashboards.precompute(generation)
    cache.generation_publish(generation)
    return {
        "generation": generation,
        "computed": computed,
        "seconds": round(time.monotonic() - started, 3),
    }
