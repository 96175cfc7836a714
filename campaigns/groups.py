"""Customer group statistics (社群): per group its size now, who joined and who quit in a
window, the quit rate, and the members who bought.

Members and their join / quit events come from WeCom through the sync writer
(`contacts.wecom_sync.WeComWriter.groups`, for a full sync and for the
change_external_chat callback alike): `CustomerGroupMember` is the member list now,
`CustomerGroupEvent` what changed it (joined at WeCom's join_time, left when we
learnt it).
"""

from datetime import datetime

from django.db import connection

PAID = ("paid", "partially_refunded")  # as attribution counts a purchase


def group_stats(start: datetime, end: datetime, *, include_dismissed: bool = False) -> list[dict]:
    """Per customer group, for the window [start, end):

    - `members`: members now (customers and staff), `customers`: those of them who are
      our customers;
    - `joins`, `quits`: members who joined / left in the window;
    - `size_at_start`: members at `start` (the members now, less who joined since
      `start`, plus who left since);
    - `quit_rate`: quits / (size_at_start + joins), None for a group nobody was in;
    - `buyers`: customers in the group now with a paid order in the window.

    Dismissed groups are left out unless `include_dismissed`. One statement; ordered by
    group id."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH moves AS (
                SELECT group_id,
                       count(*) FILTER (WHERE kind = 'joined' AND at < %(end)s) AS joins,
                       count(*) FILTER (WHERE kind = 'left' AND at < %(end)s) AS quits,
                       count(*) FILTER (WHERE kind = 'joined') AS joins_since,
                       count(*) FILTER (WHERE kind = 'left') AS quits_since
                FROM contacts_customergroupevent
                WHERE at >= %(start)s
                GROUP BY group_id
            ), present AS (
                SELECT m.group_id, count(*) AS members, count(m.customer_id) AS customers,
                       count(DISTINCT m.customer_id) FILTER (WHERE EXISTS (
                           SELECT 1 FROM contacts_order o
                           WHERE o.customer_id = m.customer_id AND o.status IN %(paid)s
                             AND o.paid_at >= %(start)s AND o.paid_at < %(end)s)) AS buyers
                FROM contacts_customergroupmember m
                GROUP BY m.group_id
            )
            SELECT *, quits::float / nullif(size_at_start + joins, 0) AS quit_rate
            FROM (
                SELECT g.id AS group_id, g.chat_id, g.name, g.owner_userid, g.is_dismissed,
                       coalesce(p.members, 0) AS members, coalesce(p.customers, 0) AS customers,
                       coalesce(v.joins, 0) AS joins, coalesce(v.quits, 0) AS quits,
                       greatest(0, coalesce(p.members, 0) - coalesce(v.joins_since, 0)
                                   + coalesce(v.quits_since, 0)) AS size_at_start,
                       coalesce(p.buyers, 0) AS buyers
                FROM contacts_customergroup g
                LEFT JOIN present p ON p.group_id = g.id
                LEFT JOIN moves v ON v.group_id = g.id
                WHERE %(dismissed)s OR NOT g.is_dismissed
            ) s
            ORDER BY group_id
            """,
            {"start": start, "end": end, "paid": PAID, "dismissed": include_dismissed},
        )
        columns = [column.name for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
