"""Full sync from WeCom: stores, guides, corp tags, customers, relationships, groups.

Set-based: each flush of up to FLUSH_RELATIONS relationships is written with a
handful of statements (stage into a temporary table, UPDATE what differs,
INSERT what is new), never a per-row ORM save. The run's cursor is saved in
the same transaction as the rows it covers, so a run killed at any point
resumes where it stopped and ends with exactly WeCom's data.

API calls are the minimum the API allows: one batch/get_by_user call per 100
relationships (100 members per call), one groupchat/get per group.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from psycopg2.extras import execute_values

from contacts.facts import facts_mark_pending
from contacts.models import CustomerGroup, SyncRun
from contacts.phones import phone_hash, phone_mask, phone_normalise
from scrm.statistics import analyze_if_grown

logger = logging.getLogger(__name__)

MEMBERS_PER_CALL = 100  # batch/get_by_user: userid_list ≤ 100
RELATIONS_PER_CALL = 100  # batch/get_by_user: limit ≤ 100
FLUSH_RELATIONS = settings.SYNC_FLUSH_RELATIONS  # relationships written per transaction
GROUPS_PER_CALL = 1000  # groupchat/list: limit ≤ 1000
OWNERS_PER_CALL = 100  # groupchat/list: owner_filter.userid_list ≤ 100
STAGES = ["guides", "tags", "customers", "groups", "finish"]
# Session-level advisory lock: one sync executes at a time; it is released
# when the executing connection dies, so a killed worker never blocks the next.
SYNC_LOCK_KEY = 7_301_001
# A merge or its undo moves a WeCom contact (its external_userid, relationships, group
# memberships and a running sync's seen marks) from one customer to another; a write of
# a sync or a callback finds customers by external_userid. Each such write transaction
# holds this lock shared (`contacts_lock_shared`), a merge or an undo holds it alone:
# neither sees the other half-done, and a merge waits for one write batch at most.
CONTACTS_LOCK = 7_301_006
# What a run writes, by the count that measures it: statistics renewed after a run that
# changed many rows (`scrm.statistics`; the first table is the one measured).
SYNCED_TABLES = {
    "customers": ("contacts_customer", "contacts_customeridentity"),
    "relationships": ("contacts_relationship", "contacts_relationshipevent"),
    "groups": ("contacts_customergroup", "contacts_customergroupmember"),
}


def contacts_lock_shared(cursor) -> None:
    """For the rest of this transaction no merge moves a WeCom contact (`CONTACTS_LOCK`)."""
    cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [CONTACTS_LOCK])


def _counts() -> dict:
    return {"created": 0, "updated": 0, "unchanged": 0, "removed": 0}


def _from_epoch(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds else None


@dataclass
class SyncProgress:
    counts: dict = field(
        default_factory=lambda: {
            name: _counts() for name in ("customers", "relationships", "guides", "tags", "groups")
        }
    )

    def add(self, entity: str, **numbers: int) -> None:
        for key, value in numbers.items():
            self.counts[entity][key] += value


class SyncAlreadyRunning(Exception):
    """Another sync holds the lock; this one did nothing."""


class WeComWriter:
    """Writes what WeCom says into our tables, set-based, counting what changed.

    Used by the full sync (with a run id: what it sees is recorded, so that what
    it did not see can be ended) and by callback handlers (without one). The
    caller owns the transaction.
    """

    def __init__(self, *, progress: SyncProgress, source: str, run_id: int | None = None) -> None:
        self.progress = progress
        self.source = source
        self.run_id = run_id

    def guides(self, departments: list[dict], members: list[dict], follow_users: set[str]) -> None:
        """Stores (departments below the root) and guides (members; active if they follow customers)."""
        store_rows = [
            (
                department.get("name_en") or f"D{department['id']}",
                department["name"],
                "",
                department["id"],
            )
            for department in departments
            if department.get("parentid")  # the root (HQ) is not a store
        ]
        guide_rows = [
            (
                member["userid"],
                member.get("name", ""),
                next(iter(member.get("department") or []), None),
                member["userid"] in follow_users and member.get("status", 1) == 1,
            )
            for member in members
        ]
        with connection.cursor() as cursor:
            if store_rows:
                execute_values(
                    cursor,
                    """
                    INSERT INTO contacts_store (code, name, city, wecom_department_id) VALUES %s
                    ON CONFLICT (wecom_department_id) DO UPDATE SET code = EXCLUDED.code, name = EXCLUDED.name
                    WHERE (contacts_store.code, contacts_store.name) IS DISTINCT FROM (EXCLUDED.code, EXCLUDED.name)
                    """,
                    store_rows,
                )
            self._upsert_guides(cursor, guide_rows)

    def _upsert_guides(self, cursor, rows: list[tuple]) -> None:
        cursor.execute(
            "DROP TABLE IF EXISTS stage_guide; CREATE TEMP TABLE stage_guide (userid text, name text, department_id bigint, is_active bool)"
            " ON COMMIT DROP"
        )
        execute_values(cursor, "INSERT INTO stage_guide VALUES %s", rows)
        cursor.execute(
            """
            UPDATE contacts_guide g SET name = s.name, store_id = st.id, is_active = s.is_active
            FROM stage_guide s LEFT JOIN contacts_store st ON st.wecom_department_id = s.department_id
            WHERE g.wecom_userid = s.userid
              AND (g.name, g.store_id, g.is_active) IS DISTINCT FROM (s.name, st.id, s.is_active)
            """
        )
        updated = cursor.rowcount
        cursor.execute(
            """
            INSERT INTO contacts_guide (wecom_userid, name, store_id, is_active)
            SELECT s.userid, s.name, st.id, s.is_active
            FROM stage_guide s LEFT JOIN contacts_store st ON st.wecom_department_id = s.department_id
            ON CONFLICT (wecom_userid) DO NOTHING
            """
        )
        created = cursor.rowcount
        cursor.execute(
            """
            UPDATE contacts_guide g SET is_active = false
            WHERE g.is_active AND NOT EXISTS (SELECT 1 FROM stage_guide s WHERE s.userid = g.wecom_userid)
            """
        )
        removed = cursor.rowcount
        self.progress.add(
            "guides",
            created=created,
            updated=updated,
            removed=removed,
            unchanged=len(rows) - created - updated,
        )

    def corp_tags(self, groups: list[dict]) -> None:
        """WeCom's corp tag library; groups and tags it no longer has are marked deleted."""
        group_rows = [(g["group_id"], g["group_name"], g.get("order", 0)) for g in groups]
        tag_rows = [
            (t["id"], g["group_id"], t["name"], t.get("order", 0))
            for g in groups
            for t in g.get("tag", [])
        ]
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TABLE IF EXISTS stage_group; CREATE TEMP TABLE stage_group (id text, name text, ord bigint) ON COMMIT DROP;"
                "DROP TABLE IF EXISTS stage_tag; CREATE TEMP TABLE stage_tag (id text, group_id text, name text, ord bigint) ON COMMIT DROP"
            )
            if group_rows:
                execute_values(cursor, "INSERT INTO stage_group VALUES %s", group_rows)
            if tag_rows:
                execute_values(cursor, "INSERT INTO stage_tag VALUES %s", tag_rows)
            cursor.execute(
                """
                INSERT INTO contacts_corptaggroup (wecom_group_id, name, "order", is_deleted)
                SELECT id, name, ord, false FROM stage_group
                ON CONFLICT (wecom_group_id) DO UPDATE
                SET name = EXCLUDED.name, "order" = EXCLUDED."order", is_deleted = false
                WHERE (contacts_corptaggroup.name, contacts_corptaggroup."order", contacts_corptaggroup.is_deleted)
                      IS DISTINCT FROM (EXCLUDED.name, EXCLUDED."order", false)
                """
            )
            cursor.execute(
                """
                UPDATE contacts_corptaggroup SET is_deleted = true
                WHERE NOT is_deleted AND wecom_group_id NOT IN (SELECT id FROM stage_group)
                """
            )
            cursor.execute(
                """
                UPDATE contacts_corptag t SET name = s.name, "order" = s.ord, is_deleted = false, group_id = g.id
                FROM stage_tag s JOIN contacts_corptaggroup g ON g.wecom_group_id = s.group_id
                WHERE t.wecom_tag_id = s.id
                  AND (t.name, t."order", t.is_deleted, t.group_id) IS DISTINCT FROM (s.name, s.ord, false, g.id)
                """
            )
            updated = cursor.rowcount
            cursor.execute(
                """
                INSERT INTO contacts_corptag (wecom_tag_id, group_id, name, "order", is_deleted)
                SELECT s.id, g.id, s.name, s.ord, false
                FROM stage_tag s JOIN contacts_corptaggroup g ON g.wecom_group_id = s.group_id
                ON CONFLICT (wecom_tag_id) DO NOTHING
                """
            )
            created = cursor.rowcount
            cursor.execute(
                """
                UPDATE contacts_corptag SET is_deleted = true
                WHERE NOT is_deleted AND wecom_tag_id NOT IN (SELECT id FROM stage_tag)
                """
            )
            removed = cursor.rowcount
            self.progress.add(
                "tags",
                created=created,
                updated=updated,
                removed=removed,
                unchanged=len(tag_rows) - created - updated,
            )

    def relations(self, items: list[dict]) -> None:
        """Relationship items as batch/get_by_user gives them: customers, relationships, identities."""
        if not items:
            return
        customers: dict[str, tuple] = {}
        relations: list[tuple] = []
        phones: dict[str, tuple] = {}
        for item in items:
            contact, follow = item["external_contact"], item["follow_info"]
            external_userid = contact["external_userid"]
            customers[external_userid] = (
                external_userid,
                contact.get("name", ""),
                contact.get("type", 0),
                contact.get("gender", 0),
                contact.get("avatar", ""),
                contact.get("corp_name", ""),
                contact.get("unionid", ""),
            )
            relations.append(
                (
                    external_userid,
                    follow["userid"],
                    follow.get("remark", ""),
                    follow.get("description", ""),
                    follow.get("remark_corp_name", ""),
                    [m for m in follow.get("remark_mobiles", []) if m],
                    _from_epoch(follow.get("createtime")),
                    follow.get("add_way", 0),
                    follow.get("oper_userid", ""),
                    follow.get("state", ""),
                    sorted(follow.get("tag_id", [])),
                )
            )
            for mobile in follow.get("remark_mobiles", []):
                e164 = phone_normalise(mobile)
                if e164:
                    phones[phone_hash(e164)] = (external_userid, phone_hash(e164), phone_mask(e164))
        with connection.cursor() as cursor:
            contacts_lock_shared(cursor)
            self._upsert_customers(cursor, list(customers.values()))
            self._upsert_relationships(cursor, relations)
            self._record_identities(cursor, list(customers.values()), list(phones.values()))
            self._refresh_membership(cursor, list(customers))

    def _upsert_customers(self, cursor, rows: list[tuple]) -> None:
        cursor.execute(
            "DROP TABLE IF EXISTS stage_customer; CREATE TEMP TABLE stage_customer (external_userid text, name text, type smallint,"
            " gender smallint, avatar text, corp_name text, unionid text) ON COMMIT DROP"
        )
        execute_values(cursor, "INSERT INTO stage_customer VALUES %s", rows)
        cursor.execute(
            """
            UPDATE contacts_customer c
            SET name = s.name, type = s.type, gender = s.gender, avatar = s.avatar,
                corp_name = s.corp_name, unionid = s.unionid, updated_at = now()
            FROM stage_customer s
            WHERE c.external_userid = s.external_userid
              AND (c.name, c.type, c.gender, c.avatar, c.corp_name, c.unionid)
                  IS DISTINCT FROM (s.name, s.type, s.gender, s.avatar, s.corp_name, s.unionid)
            """
        )
        updated = cursor.rowcount
        cursor.execute(
            """
            INSERT INTO contacts_customer (external_userid, name, type, gender, avatar, corp_name,
                                           unionid, is_member, created_at, updated_at)
            SELECT external_userid, name, type, gender, avatar, corp_name, unionid, true, now(), now()
            FROM stage_customer
            ON CONFLICT (external_userid) DO NOTHING
            """
        )
        self.progress.add("customers", created=cursor.rowcount, updated=updated)

    def _upsert_relationships(self, cursor, rows: list[tuple]) -> None:
        cursor.execute(
            "DROP TABLE IF EXISTS stage_relation; CREATE TEMP TABLE stage_relation (external_userid text, userid text, remark text,"
            " description text, remark_corp_name text, remark_mobiles varchar(32)[],"
            " added_at timestamptz, add_way int, oper_userid text, state text,"
            " wecom_tag_ids varchar(64)[], customer_id bigint, guide_id bigint) ON COMMIT DROP"
        )
        execute_values(
            cursor, "INSERT INTO stage_relation VALUES %s", [(*row, None, None) for row in rows]
        )
        cursor.execute(
            """
            UPDATE stage_relation s SET customer_id = c.id, guide_id = g.id
            FROM contacts_customer c, contacts_guide g
            WHERE c.external_userid = s.external_userid AND g.wecom_userid = s.userid
            """
        )
        cursor.execute(
            """
            UPDATE contacts_relationship r
            SET remark = s.remark, description = s.description, remark_corp_name = s.remark_corp_name,
                remark_mobiles = s.remark_mobiles, added_at = s.added_at, add_way = s.add_way,
                oper_userid = s.oper_userid, state = s.state, wecom_tag_ids = s.wecom_tag_ids,
                is_active = true, ended_at = NULL, ended_by = '', updated_at = now()
            FROM stage_relation s
            WHERE r.customer_id = s.customer_id AND r.guide_id = s.guide_id
              AND (r.remark, r.description, r.remark_corp_name, r.remark_mobiles, r.added_at,
                   r.add_way, r.oper_userid, r.state, r.wecom_tag_ids, r.is_active)
                  IS DISTINCT FROM (s.remark, s.description, s.remark_corp_name, s.remark_mobiles,
                   s.added_at, s.add_way, s.oper_userid, s.state, s.wecom_tag_ids, true)
            RETURNING r.customer_id
            """
        )
        changed = [row[0] for row in cursor.fetchall()]
        updated = len(changed)
        cursor.execute(
            """
            WITH inserted AS (
                INSERT INTO contacts_relationship (customer_id, guide_id, remark, description,
                    remark_corp_name, remark_mobiles, added_at, add_way, oper_userid, state,
                    wecom_tag_ids, is_active, ended_by, updated_at)
                SELECT customer_id, guide_id, remark, description, remark_corp_name, remark_mobiles,
                       added_at, add_way, oper_userid, state, wecom_tag_ids, true, '', now()
                FROM stage_relation WHERE customer_id IS NOT NULL AND guide_id IS NOT NULL
                ON CONFLICT (customer_id, guide_id) DO NOTHING
                RETURNING id, added_at, customer_id
            ), events AS (
                INSERT INTO contacts_relationshipevent (relationship_id, kind, source, occurred_at,
                                                        detail, created_at)
                SELECT id, 'added', %s, added_at, '{}'::jsonb, now() FROM inserted
            )
            SELECT customer_id FROM inserted
            """,
            [self.source],
        )
        added = [row[0] for row in cursor.fetchall()]
        created = len(added)
        facts_mark_pending(changed + added)
        if self.run_id is not None:
            cursor.execute(
                """
            INSERT INTO contacts_syncseen (run_id, customer_id, guide_id)
            SELECT %s, customer_id, guide_id FROM stage_relation
            WHERE customer_id IS NOT NULL AND guide_id IS NOT NULL
            ON CONFLICT DO NOTHING
            """,
                [self.run_id],
            )
        self.progress.add("relationships", created=created, updated=updated)

    def _record_identities(self, cursor, customers: list[tuple], phones: list[tuple]) -> None:
        """Unionids and remark mobiles become identities (first owner keeps a contested key)."""
        cursor.execute(
            """
            INSERT INTO contacts_customeridentity (customer_id, kind, value, display, created_at)
            SELECT c.id, 'unionid', c.unionid, '', now()
            FROM contacts_customer c JOIN stage_customer s ON s.external_userid = c.external_userid
            WHERE c.unionid <> ''
            ON CONFLICT (kind, value) DO NOTHING
            """
        )
        if phones:
            execute_values(
                cursor,
                """
                INSERT INTO contacts_customeridentity (customer_id, kind, value, display, created_at)
                SELECT c.id, 'phone_hash', v.hash, v.display, now()
                FROM (VALUES %s) AS v(external_userid, hash, display)
                JOIN contacts_customer c ON c.external_userid = v.external_userid
                ON CONFLICT (kind, value) DO NOTHING
                """,
                phones,
            )

    def _refresh_membership(self, cursor, external_userids: list[str]) -> None:
        """is_member and joined_at (the first relationship's add time) of the customers touched."""
        cursor.execute(
            """
            UPDATE contacts_customer c SET is_member = m.is_member, joined_at = m.joined_at
            FROM (
                SELECT r.customer_id, bool_or(r.is_active) AS is_member, min(r.added_at) AS joined_at
                FROM contacts_relationship r JOIN contacts_customer c2 ON c2.id = r.customer_id
                WHERE c2.external_userid = ANY(%s)
                GROUP BY r.customer_id
            ) m
            WHERE c.id = m.customer_id
              AND (c.is_member, c.joined_at) IS DISTINCT FROM (m.is_member, m.joined_at)
            """,
            [external_userids],
        )

    def end_unseen_relationships(self) -> None:
        """Live relationships WeCom no longer lists were deleted while no callback reached us."""
        with connection.cursor() as cursor:
            contacts_lock_shared(cursor)
            cursor.execute(
                """
                WITH ended AS (
                    UPDATE contacts_relationship r
                    SET is_active = false, ended_at = now(), ended_by = 'sync', updated_at = now()
                    WHERE r.is_active AND NOT EXISTS (
                        SELECT 1 FROM contacts_syncseen s
                        WHERE s.run_id = %s AND s.customer_id = r.customer_id AND s.guide_id = r.guide_id
                    )
                    RETURNING r.id, r.customer_id
                ), events AS (
                    INSERT INTO contacts_relationshipevent (relationship_id, kind, source, occurred_at,
                                                            detail, created_at)
                    SELECT id, 'ended', 'sync', now(), '{}'::jsonb, now() FROM ended
                )
                SELECT customer_id FROM ended
                """,
                [self.run_id],
            )
            ended = [row[0] for row in cursor.fetchall()]
            touched = sorted(set(ended))
            facts_mark_pending(touched)
            self.progress.add("relationships", removed=len(ended))
            cursor.execute(
                """
                UPDATE contacts_customer c SET is_member = false
                WHERE c.id = ANY(%s) AND c.is_member
                  AND NOT EXISTS (SELECT 1 FROM contacts_relationship r
                                  WHERE r.customer_id = c.id AND r.is_active)
                """,
                [touched],
            )
            self.progress.add("customers", removed=cursor.rowcount)
            cursor.execute(
                "SELECT count(*), count(DISTINCT customer_id) FROM contacts_syncseen WHERE run_id = %s",
                [self.run_id],
            )
            seen_relations, seen_customers = cursor.fetchone()
            relationships, customers = (
                self.progress.counts["relationships"],
                self.progress.counts["customers"],
            )
            relationships["unchanged"] = (
                seen_relations - relationships["created"] - relationships["updated"]
            )
            customers["unchanged"] = seen_customers - customers["created"] - customers["updated"]
            cursor.execute("DELETE FROM contacts_syncseen WHERE run_id = %s", [self.run_id])

    def groups(self, details: list[dict], statuses: list[int]) -> None:
        """groupchat/get details: upsert groups and replace their member lists."""
        if not details:
            return
        group_rows = [
            (
                group["chat_id"],
                group.get("name", ""),
                group.get("owner", ""),
                group.get("notice", ""),
                _from_epoch(group.get("create_time")),
                status,
                group.get("member_version", ""),
                len(group.get("member_list", [])),
            )
            for group, status in zip(details, statuses, strict=True)
        ]
        member_rows = [
            (
                group["chat_id"],
                member["userid"],
                member.get("type", 2),
                member.get("name", "") or member.get("group_nickname", ""),
                _from_epoch(member.get("join_time")),
                member.get("join_scene", 0),
            )
            for group in details
            for member in group.get("member_list", [])
        ]
        with connection.cursor() as cursor:
            contacts_lock_shared(cursor)
            cursor.execute(
                "DROP TABLE IF EXISTS stage_chat; CREATE TEMP TABLE stage_chat (chat_id text, name text, owner text, notice text,"
                " created timestamptz, status smallint, member_version text, member_count int) ON COMMIT DROP;"
                "DROP TABLE IF EXISTS stage_member; CREATE TEMP TABLE stage_member (chat_id text, userid text, type smallint, name text,"
                " join_time timestamptz, join_scene smallint) ON COMMIT DROP"
            )
            execute_values(cursor, "INSERT INTO stage_chat VALUES %s", group_rows)
            if member_rows:
                execute_values(cursor, "INSERT INTO stage_member VALUES %s", member_rows)
            # Customers joining or leaving a group change their facts (in_group).
            cursor.execute(
                """
                SELECT m.customer_id FROM contacts_customergroupmember m
                JOIN contacts_customergroup g ON g.id = m.group_id
                JOIN stage_chat s ON s.chat_id = g.chat_id
                WHERE m.customer_id IS NOT NULL
                UNION
                SELECT c.id FROM stage_member s JOIN contacts_customer c
                  ON s.type = 2 AND c.external_userid = s.userid
                """
            )
            facts_mark_pending(row[0] for row in cursor.fetchall())
            cursor.execute(
                """
                UPDATE contacts_customergroup g
                SET name = s.name, owner_userid = s.owner, notice = s.notice, created_at_wecom = s.created,
                    status = s.status, member_version = s.member_version, member_count = s.member_count,
                    is_dismissed = false
                FROM stage_chat s
                WHERE g.chat_id = s.chat_id
                  AND (g.name, g.owner_userid, g.notice, g.created_at_wecom, g.status, g.member_version,
                       g.member_count, g.is_dismissed)
                      IS DISTINCT FROM (s.name, s.owner, s.notice, s.created, s.status, s.member_version,
                       s.member_count, false)
                RETURNING g.chat_id
                """
            )
            updated = cursor.rowcount
            cursor.execute(
                """
                INSERT INTO contacts_customergroup (chat_id, name, owner_userid, notice, created_at_wecom,
                    status, member_version, member_count, is_dismissed)
                SELECT chat_id, name, owner, notice, created, status, member_version, member_count, false
                FROM stage_chat
                ON CONFLICT (chat_id) DO NOTHING
                """
            )
            created = cursor.rowcount
            # Members: replace each staged group's member list with WeCom's. Who left and
            # who joined is recorded by the statements that delete and insert them
            # (a member deleted: left, now; inserted: joined, at WeCom's join_time), so
            # a change is recorded once even when a sync and a callback race.
            events = {"now": timezone.now(), "source": self.source}
            cursor.execute(
                """
                WITH gone AS (
                    DELETE FROM contacts_customergroupmember m
                    USING contacts_customergroup g
                    WHERE m.group_id = g.id AND g.chat_id IN (SELECT chat_id FROM stage_chat)
                      AND NOT EXISTS (SELECT 1 FROM stage_member s
                                      WHERE s.chat_id = g.chat_id AND s.userid = m.userid)
                    RETURNING m.group_id, m.userid, m.type, m.customer_id
                )
                INSERT INTO contacts_customergroupevent (group_id, userid, type, customer_id, kind,
                                                         at, source)
                SELECT group_id, userid, type, customer_id, 'left', %(now)s, %(source)s FROM gone
                """,
                events,
            )
            cursor.execute(
                """
                WITH joined AS (
                    INSERT INTO contacts_customergroupmember (group_id, userid, type, customer_id,
                                                              name, join_time, join_scene)
                    SELECT g.id, s.userid, s.type, c.id, s.name, s.join_time, s.join_scene
                    FROM stage_member s
                    JOIN contacts_customergroup g ON g.chat_id = s.chat_id
                    LEFT JOIN contacts_customer c ON s.type = 2 AND c.external_userid = s.userid
                    ON CONFLICT (group_id, userid) DO NOTHING
                    RETURNING group_id, userid, type, customer_id, join_time
                )
                INSERT INTO contacts_customergroupevent (group_id, userid, type, customer_id, kind,
                                                         at, source)
                SELECT group_id, userid, type, customer_id, 'joined', coalesce(join_time, %(now)s),
                       %(source)s
                FROM joined
                """,
                events,
            )
            cursor.execute(
                """
                UPDATE contacts_customergroupmember m
                SET type = s.type, customer_id = c.id, name = s.name, join_time = s.join_time,
                    join_scene = s.join_scene
                FROM stage_member s
                JOIN contacts_customergroup g ON g.chat_id = s.chat_id
                LEFT JOIN contacts_customer c ON s.type = 2 AND c.external_userid = s.userid
                WHERE m.group_id = g.id AND m.userid = s.userid
                  AND (m.type, m.customer_id, m.name, m.join_time, m.join_scene)
                      IS DISTINCT FROM (s.type, c.id, s.name, s.join_time, s.join_scene)
                """
            )
            if self.run_id is not None:
                cursor.execute(
                    "INSERT INTO contacts_syncseen (run_id, customer_id, guide_id)"
                    " SELECT %s, g.id, -1 FROM contacts_customergroup g JOIN stage_chat s USING (chat_id)"
                    " ON CONFLICT DO NOTHING",
                    [self.run_id],
                )
        self.progress.add(
            "groups",
            created=created,
            updated=updated,
            unchanged=len(group_rows) - created - updated,
        )

    def end_missing_groups(self) -> None:
        """Groups WeCom no longer lists are dismissed (seen groups are marked with guide_id -1)."""
        with connection.cursor() as cursor:
            cursor.execute(
                """
                WITH dismissed AS (
                    UPDATE contacts_customergroup g SET is_dismissed = true
                    WHERE NOT g.is_dismissed AND NOT EXISTS (
                        SELECT 1 FROM contacts_syncseen s
                        WHERE s.run_id = %s AND s.guide_id = -1 AND s.customer_id = g.id)
                    RETURNING g.id
                )
                SELECT d.id, m.customer_id FROM dismissed d
                LEFT JOIN contacts_customergroupmember m ON m.group_id = d.id
                """,
                [self.run_id],
            )
            rows = cursor.fetchall()
            self.progress.add("groups", removed=len({group for group, _ in rows}))
            facts_mark_pending(customer for _, customer in rows)
            cursor.execute("DELETE FROM contacts_syncseen WHERE run_id = %s", [self.run_id])


class WeComFullSync:
    """Runs (or resumes) one SyncRun against a gateway."""

    def __init__(self, *, run: SyncRun, gateway) -> None:
        self.run = run
        self.gateway = gateway
        self.progress = SyncProgress()
        self.writer = WeComWriter(progress=self.progress, source="sync", run_id=run.pk)
        if run.counts:
            for entity, numbers in run.counts.items():
                self.progress.counts[entity].update(numbers)
        self.started = time.monotonic()
        self.api_calls_before = gateway.api_calls
        self.previous_seconds = run.seconds
        self.previous_api_calls = run.api_calls

    # -- the run ---------------------------------------------------------

    def execute(self) -> SyncRun:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [SYNC_LOCK_KEY])
            if not cursor.fetchone()[0]:
                raise SyncAlreadyRunning
        try:
            stage = self.run.cursor.get("stage", STAGES[0])
            for name in STAGES[STAGES.index(stage) :]:
                getattr(self, f"_stage_{name}")()
        except Exception as error:
            self._fail(error)
            raise
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [SYNC_LOCK_KEY])
        return self.run

    def _save(self, **cursor) -> None:
        """Persist progress; called inside the transaction that wrote the rows."""
        self.run.cursor = cursor
        self.run.counts = self.progress.counts
        self.run.api_calls = (
            self.previous_api_calls + self.gateway.api_calls - self.api_calls_before
        )
        self.run.seconds = self.previous_seconds + time.monotonic() - self.started
        self.run.save(update_fields=["cursor", "counts", "api_calls", "seconds"])

    def _fail(self, error: Exception) -> None:
        self.run.refresh_from_db(fields=["cursor"])
        self.run.status = SyncRun.Status.FAILED
        self.run.finished_at = timezone.now()
        self.run.errors = [
            *self.run.errors,
            {"stage": self.run.cursor.get("stage"), "error": str(error)},
        ]
        self.run.save(update_fields=["status", "finished_at", "errors"])
        logger.exception("sync run %s failed", self.run.pk)

    # -- stages ----------------------------------------------------------

    def _stage_guides(self) -> None:
        departments = self.gateway.department_list()
        members = self.gateway.user_list(department_id=1)
        follow_users = set(self.gateway.follow_user_list())
        with transaction.atomic():
            self.writer.guides(departments, members, follow_users)
            self._save(stage="tags")

    def _stage_tags(self) -> None:
        groups = self.gateway.corp_tag_list()
        with transaction.atomic():
            self.writer.corp_tags(groups)
            self._save(stage="customers", batch=0, cursor="")

    def _stage_customers(self) -> None:
        saved = self.run.cursor
        if "userids" not in saved:
            userids = sorted(
                self.gateway.follow_user_list()
            )  # fixed for the whole run, so a resumed run walks the same batches
            with transaction.atomic():
                self._save(stage="customers", batch=0, cursor="", userids=userids)
            saved = self.run.cursor
        userids: list[str] = saved["userids"]
        batches = [
            userids[i : i + MEMBERS_PER_CALL] for i in range(0, len(userids), MEMBERS_PER_CALL)
        ]
        batch_index, page_cursor = saved["batch"], saved["cursor"]
        pending: list[dict] = []
        while batch_index < len(batches):
            items, next_cursor = self.gateway.batch_get_by_user(
                batches[batch_index], cursor=page_cursor, limit=RELATIONS_PER_CALL
            )
            pending.extend(items)
            if next_cursor:
                page_cursor = next_cursor
            else:
                batch_index, page_cursor = batch_index + 1, ""
            if len(pending) >= FLUSH_RELATIONS or batch_index == len(batches):
                with transaction.atomic():
                    self.writer.relations(pending)
                    self._save(
                        stage="customers", batch=batch_index, cursor=page_cursor, userids=userids
                    )
                pending = []
        with transaction.atomic():
            self.writer.end_unseen_relationships()
            self._save(stage="groups", batch=0, cursor="", userids=userids)

    def _stage_groups(self) -> None:
        # groupchat/list needs an owner filter (≤ 100 owners) once a corp has more than
        # 1,000 follow users (81017): walk the owners in batches of 100. The owners are the
        # run's follow users and the owners of the groups we hold: a member who left is no
        # follow user any more, but their groups live on in WeCom (waiting for a successor)
        # and must not look dismissed.
        saved = self.run.cursor
        owners: list[str] | None = saved.get("owners")
        if owners is None:
            follow_users = saved.get("userids") or self.gateway.follow_user_list()
            held = CustomerGroup.objects.filter(is_dismissed=False).values_list(
                "owner_userid", flat=True
            )
            owners = sorted((set(follow_users) | set(held)) - {""})
        batches = [owners[i : i + OWNERS_PER_CALL] for i in range(0, len(owners), OWNERS_PER_CALL)]
        batch_index, page_cursor = saved.get("batch", 0), saved.get("cursor", "")
        while batch_index < len(batches):
            chats, next_cursor = self.gateway.groupchat_list(
                owners=batches[batch_index], cursor=page_cursor, limit=GROUPS_PER_CALL
            )
            details = [self.gateway.groupchat_get(chat["chat_id"]) for chat in chats]
            if next_cursor:
                page_cursor = next_cursor
            else:
                batch_index, page_cursor = batch_index + 1, ""
            with transaction.atomic():
                self.writer.groups(details, [chat.get("status", 0) for chat in chats])
                self._save(stage="groups", batch=batch_index, cursor=page_cursor, owners=owners)
        with transaction.atomic():
            self.writer.end_missing_groups()
            self._save(stage="finish")

    def _stage_finish(self) -> None:
        with transaction.atomic():
            self.run.status = SyncRun.Status.SUCCEEDED
            self.run.finished_at = timezone.now()
            self._save(stage="done")
            self.run.save(update_fields=["status", "finished_at"])
        for entity, tables in SYNCED_TABLES.items():
            counts = self.progress.counts[entity]
            changed = counts["created"] + counts["updated"] + counts["removed"]
            analyze_if_grown(measure=tables[0], changed=changed, tables=tables)
