"""How often a user may try something that, tried often enough, gives away what they
may not see: counted per user over an hour from their first try, in the cache (Redis)."""

import math
import time
from dataclasses import dataclass

from django.core.cache import cache

HOUR = 3600


class LimitReached(Exception):
    """The message says what was refused and what to do instead."""


@dataclass(frozen=True)
class HourlyLimit:
    name: str
    per_hour: int

    def _key(self, user) -> str:
        return f"limit:{self.name}:{user.pk}"

    def reached(self, user) -> bool:
        return (cache.get(self._key(user)) or 0) >= self.per_hour

    def count(self, user) -> None:
        key = self._key(user)
        if cache.add(key, 1, timeout=HOUR):  # the first try of an hour
            cache.set(f"{key}:since", time.time(), timeout=HOUR)
            return
        try:
            cache.incr(key)
        except ValueError:  # the hour ended just now: this try starts the next
            self.count(user)

    def minutes_left(self, user) -> int:
        """Until the hour from the first try ends, and the count starts again."""
        since = cache.get(f"{self._key(user)}:since") or time.time()
        return max(1, math.ceil((since + HOUR - time.time()) / 60))
