"""Customer group statistics (社群): per group its size now, who joined and who quit in a
window, the quit rate, and the members who bought.

Members and their join / quit events come from WeCom through the sync writer
(`contacts.wecom_sync.WeComWriter.groups`, for a full sync and for the
change_external_chat callback alike): `CustomerGroupMember` is the member list now,
`CustomerGroupEvent` what changed it (joined at WeCom's join_time, left when we
learnt it).
"""

from datetime import date, datetime, timedelta

from django.db import connection

from scrm.roles import Perm
from sop.scheduling import local_midnight

PAID = ("paid", "partially_refunded")  # as attribution counts a purchase
# The orders a group list can be sorted by: numbers largest first, names by pinyin; ties
# by group id, so that pages do not overlap.
SORTS = {
    "group_id": "group_id",
    "name": 'name COLLATE "zh-x-icu", group_id',  # pinyin order (ICU)
    "members": "members DESC, group_id",
    "joins": "joins DESC, group_id",
    "quits": "quits DESC, group_id",
    "quit_rate": "quit_rate DESC NULLS LAST, group_id",
    "buyers": "buyers DESC, group_id",
    "revenue": "revenue DESC, group_id",
}


def group_stats(
    start: datetime,
    end: datetime,
    *,
    owners: list[str] | None = None,
    include_dismissed: bool = False,
    search: str = "",
    sort: str = "group_id",
) -> list[dict]:
    """Per customer group, for the window [start, end):

    - `members`: members now (customers and staff), `customers`: those of them who are
      our customers;
    - `joins`, `quits`: members who joined / left in the window;
    - `size_at_start`: members at `start` (the members now, less who joined since
      `start`, plus who left since);
    - `quit_rate`: quits / (size_at_start + joins), None for a group nobody was in;
    - `buyers`: customers in the group now with a paid order in the window, `revenue`:
      the net amount (paid less refunded) of those orders.

    `owners`: only groups these guides (WeCom userids) own. Dismissed groups are left out
    unless `include_dismissed`. `search`: only groups whose name, chat id, owner's name
    or owner's userid contains it (any case). `sort`: one of SORTS. One statement. The
    window's orders are read once (contacts_order's paid_at index), members by their
    group."""
    order_by = SORTS[sort]
    pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH moves AS (
                SELECT group_id,
                       count(*) FILTER (WHERE kind = 'joined' AND at < %(end)s) AS joins,
                       count(*) FILTER (WHERE kind = 'left' AND at < %(end)s) AS quits,
                       count(*) FILTER (WHERE kind = 'joined') AS joins_since,
                       count(*) FILTER (WHERE kind = 'left') AS quits_since
                FROM contacts_customergroupevent
                WHERE at >= %(start)s
                GROUP BY group_id
            ), bought AS (
                SELECT customer_id, sum(amount - refund_amount) AS revenue
                FROM contacts_order
                WHERE customer_id IS NOT NULL AND status IN %(paid)s
                  AND paid_at >= %(start)s AND paid_at < %(end)s
                GROUP BY customer_id
            ), present AS (
                SELECT m.group_id, count(*) AS members, count(m.customer_id) AS customers,
                       count(b.customer_id) AS buyers, sum(b.revenue) AS revenue
                FROM contacts_customergroupmember m
                LEFT JOIN bought b ON b.customer_id = m.customer_id
                GROUP BY m.group_id
            )
            SELECT *, quits::float / nullif(size_at_start + joins, 0) AS quit_rate
            FROM (
                SELECT g.id AS group_id, g.chat_id, g.name, g.owner_userid,
                       coalesce(o.name, '') AS owner_name, g.is_dismissed,
                       coalesce(p.members, 0) AS members, coalesce(p.customers, 0) AS customers,
                       coalesce(v.joins, 0) AS joins, coalesce(v.quits, 0) AS quits,
                       greatest(0, coalesce(p.members, 0) - coalesce(v.joins_since, 0)
                                   + coalesce(v.quits_since, 0)) AS size_at_start,
                       coalesce(p.buyers, 0) AS buyers, coalesce(p.revenue, 0) AS revenue
                FROM contacts_customergroup g
                LEFT JOIN contacts_guide o ON o.wecom_userid = g.owner_userid
                LEFT JOIN present p ON p.group_id = g.id
                LEFT JOIN moves v ON v.group_id = g.id
                WHERE (%(dismissed)s OR NOT g.is_dismissed)
                  AND (%(owners)s::text[] IS NULL OR g.owner_userid = ANY(%(owners)s::text[]))
                  AND (%(search)s = '' OR g.name ILIKE %(pattern)s OR g.chat_id ILIKE %(pattern)s
                       OR g.owner_userid ILIKE %(pattern)s OR o.name ILIKE %(pattern)s)
            ) s
            ORDER BY {order_by}
            """,  # noqa: S608 - the order is one of SORTS
            {
                "start": start,
                "end": end,
                "paid": PAID,
                "dismissed": include_dismissed,
                "owners": owners,
                "search": search,
                "pattern": pattern,
            },
        )
        columns = [column.name for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def group_stats_for(
    user, *, start: date, end: date, search: str = "", sort: str = "group_id"
) -> list[dict]:
    """group_stats over the window of two dates (both whole days in Asia/Shanghai) as the
    user may see it: console viewers every group, a guide the groups they own, anyone
    else none."""
    owners = None
    if not user.has_perm(Perm.VIEW_CONSOLE):
        guide = getattr(user, "guide", None)
        if guide is None or not user.has_perm(Perm.USE_GUIDE_APP):
            return []
        owners = [guide.wecom_userid]
    return group_stats(
        local_midnight(start),
        local_midnight(end + timedelta(days=1)),
        owners=owners,
        search=search,
        sort=sort,
    )
