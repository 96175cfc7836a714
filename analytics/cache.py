"""Dashboard results in Django's cache (Redis), under a key that holds a generation.

Each dashboard's data is a function of its parameters; `cached` stores what that
function returned together with when it was computed (`as_of`), under
``analytics:g<generation>:<metric>:<hash of the parameters>``. Nothing is ever
invalidated one key at a time: a refresh (after order imports, debounced, and nightly;
see `analytics.services`) fills the next generation's default views first and then
publishes it, moving every reader to fresh keys at once; until then readers keep the
previous generation's results, so a refresh never leaves a page to compute on a page
view. The old generation's entries expire unread.

A missing generation (a flushed or evicted Redis) starts from the current Unix time in
microseconds: past every generation whose results could still be stored, unless more
bumps happened than microseconds passed.
"""

import hashlib
import json
import time
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.utils import timezone

GENERATION_KEY = "analytics:generation"
# A result outlives the nightly bump by a day, then expires whether read or not.
RESULT_SECONDS = 2 * 24 * 3600


def plain(value: Any) -> Any:
    """JSON-ready data: dates as ISO text, Decimals as floats, tuples as lists."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def generation() -> int:
    value = cache.get(GENERATION_KEY)
    if value is None:
        cache.add(GENERATION_KEY, time.time_ns() // 1000, timeout=None)
        value = cache.get(GENERATION_KEY)
    return int(value)


def generation_publish(generation_number: int) -> None:
    """Move every reader to this generation's keys (never back to an older one)."""
    if generation_number > generation():
        cache.set(GENERATION_KEY, generation_number, timeout=None)


def result_key(generation_number: int, metric: str, params: dict) -> str:
    canonical = json.dumps(plain(params), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:24]
    return f"analytics:g{generation_number}:{metric}:{digest}"


def cached(
    metric: str, params: dict, compute: Callable[[], Any], generation_number: int | None = None
) -> dict:
    """The stored result of `compute()` for these parameters in the current generation
    (or the given one, which a refresh fills before publishing it), computed and stored
    when missing: {metric, params, generation, as_of, data}."""
    generation_number = generation_number or generation()
    key = result_key(generation_number, metric, params)
    result = cache.get(key)
    if result is None:
        result = {
            "metric": metric,
            "params": plain(params),
            "generation": generation_number,
            "as_of": timezone.now().isoformat(),
            "data": plain(compute()),
        }
        cache.set(key, result, timeout=RESULT_SECONDS)
    return result


def stored(metric: str, params: dict) -> dict | None:
    """The current generation's result if one is stored; never computes."""
    return cache.get(result_key(generation(), metric, params))


def store(metric: str, params: dict, data: Any, generation_number: int | None = None) -> dict:
    """Store data computed elsewhere (the refresh) as the result of the current generation
    (or the given one)."""
    generation_number = generation_number or generation()
    result = {
        "metric": metric,
        "params": plain(params),
        "generation": generation_number,
        "as_of": timezone.now().isoformat(),
        "data": plain(data),
    }
    cache.set(result_key(generation_number, metric, params), result, timeout=RESULT_SECONDS)
    return result
