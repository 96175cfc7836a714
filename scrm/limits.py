"""How often a user may try something that, tried often enough, gives away what they
may not see (or a password): counted per user, or per name, over an hour from the
first try, in the cache (Redis)."""

import math
import time
from dataclasses import dataclass

from django.core.cache import cache

HOUR = 3600


class LimitReached(Exception):
    """The message says what was refused and what to do instead."""


@dataclass(frozen=True)
class HourlyLimit:
    """Tries counted per `who`: a user, or a name (the username someone signs in with)."""

    name: str
    per_hour: int

    def _key(self, who) -> str:
        return f"limit:{self.name}:{getattr(who, 'pk', who)}"

    def reached(self, who) -> bool:
        return (cache.get(self._key(who)) or 0) >= self.per_hour

    def count(self, who) -> None:
        key = self._key(who)
        if cache.add(key, 1, timeout=HOUR):  # the first try of an hour
            cache.set(f"{key}:since", time.time(), timeout=HOUR)
            return
        try:
            cache.incr(key)
        except ValueError:  # the hour ended just now: this try starts the next
            self.count(who)

    def minutes_left(self, who) -> int:
        """Until the hour from the first try ends, and the count starts again."""
        since = cache.get(f"{self._key(who)}:since") or time.time()
        return max(1, math.ceil((since + HOUR - time.time()) / 60))
