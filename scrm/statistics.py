"""Planner statistics renewed after bulk writes.

Autovacuum analyzes a table once more than 50 + 10 % of its rows changed, a
minute later at best, and never where it is off (as on this project's own
machine). Until then the planner takes a table for as many rows as it last
counted: with an empty table's statistics a dashboard filtered by channel ran
25 s instead of 0.1 s on the demo's 80,000 orders (nested loops over all of
them). Bulk writers (order imports, WeCom syncs) apply autovacuum's rule to
what they wrote, at once.
"""

import logging
from collections.abc import Sequence

from django.db import DatabaseError, connection, transaction

logger = logging.getLogger(__name__)


def analyze_if_grown(*, measure: str, changed: int, tables: Sequence[str]) -> None:
    """ANALYZE `tables` when `changed` rows of `measure` (one of them) exceed autovacuum's
    share of it. Called once the writes are committed: a failure here (a lock or statement
    timeout) is logged, and what was written and recorded stands."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [measure])
            known = max(cursor.fetchone()[0], 0)  # -1: never analyzed
            if changed > 50 + 0.1 * known:
                cursor.execute(f"ANALYZE {', '.join(tables)}")
    except DatabaseError:
        logger.exception("ANALYZE %s after a bulk write failed", ", ".join(tables))
