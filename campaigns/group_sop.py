"""Group SOP (群 SOP): messages to chosen customer groups at time slots, handed to WeCom
once per (schedule, slot, group owner), and their results.

WeCom's way for groups: add_msg_template with chat_type "group" and the owner as sender
(a member can only send to groups they own); the owner confirms in WeCom, and
get_groupmsg_send_result lists the groups it reached. A slot's send to one owner is a
GroupSend committed as `sending` before its call, as a campaign's CampaignMessage is, so
the dispatch may run twice (beat overlap, a retried task) without a second call.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import SHANGHAI, GroupSchedule, GroupSend
from campaigns.sending import month_quota
from contacts.models import CustomerGroup, Guide
from scrm.wecom.gateway import WeComError
from sop.scheduling import local_midnight

# A slot missed by longer than this (beat down, worker stopped) is not sent late: a
# 早安 message at night does more harm than good.
GRACE = timedelta(hours=1)
CUT_OFF = timedelta(minutes=2)  # a `sending` row this old was cut off during its call
MAX_GROUPS = 2000  # add_msg_template: chat_id_list ≤ 2,000
MAX_TEXT = 4000  # bytes
MAX_ATTACHMENTS = 9
RESULTS_DAYS = 30  # WeCom keeps group-message results about this long
OWNER_GONE_ERRORS = {60111}  # userid not found: the member left the corp
INHERITING = (1, 2)  # groupchat/list status: owner resigned, inheritance under way


class GroupScheduleError(ValueError):
    """A group SOP that cannot be saved, with the reason an operator can act on."""


def group_schedule_save(
    *, schedule: GroupSchedule | None, fields: dict, group_ids: list[int], by, now=None
) -> GroupSchedule:
    """Create or change a group SOP. Slots before the save are never sent (active_since),
    so changing a schedule does not send what it would have sent earlier today."""
    now = now or timezone.now()
    if not (fields.get("text") or fields.get("attachments")):
        raise GroupScheduleError("内容不能为空：请填写文字或添加附件")
    if len((fields.get("text") or "").encode()) > MAX_TEXT:
        raise GroupScheduleError(f"文字最多 {MAX_TEXT} 字节")
    if len(fields.get("attachments") or []) > MAX_ATTACHMENTS:
        raise GroupScheduleError(f"最多 {MAX_ATTACHMENTS} 个附件")
    groups = CustomerGroup.objects.filter(pk__in=group_ids, is_dismissed=False)
    if not group_ids or groups.count() != len(set(group_ids)):
        raise GroupScheduleError("请选择至少一个未解散的客户群")
    repeat = fields.get("repeat")
    if repeat == GroupSchedule.Repeat.ONCE:
        if fields.get("send_at") is None or fields["send_at"] <= now:
            raise GroupScheduleError("请选择一个将来的发送时间")
        fields = {**fields, "slot_time": None, "weekdays": []}
    elif repeat in (GroupSchedule.Repeat.DAILY, GroupSchedule.Repeat.WEEKLY):
        if fields.get("slot_time") is None:
            raise GroupScheduleError("请选择每次发送的时刻")
        weekdays = sorted(set(fields.get("weekdays") or []))
        if repeat == GroupSchedule.Repeat.WEEKLY and not weekdays:
            raise GroupScheduleError("每周发送请选择至少一天")
        if any(day not in range(1, 8) for day in weekdays):
            raise GroupScheduleError("星期只能是周一到周日")
        fields = {
            **fields,
            "send_at": None,
            "weekdays": weekdays if repeat == GroupSchedule.Repeat.WEEKLY else [],
        }
    else:
        raise GroupScheduleError("请选择发送方式：一次、每天或每周")
    with transaction.atomic():
        if schedule is None:
            schedule = GroupSchedule(created_by=by)
        for name, value in fields.items():
            setattr(schedule, name, value)
        schedule.active_since = now
        schedule.save()
        schedule.groups.set(group_ids)
    return schedule


@dataclass
class DispatchResult:
    sends: int = 0  # add_msg_template calls WeCom accepted
    owner_left: int = 0
    failed: int = 0
    unknown: int = 0
    errors: list[str] = field(default_factory=list)


def group_sends_dispatch(*, gateway, now: datetime | None = None) -> DispatchResult:
    """Every active schedule whose latest slot is due (within GRACE): its groups handed to
    WeCom, one call per owner. Must run outside a transaction (each claim commits before
    its call)."""
    now = now or timezone.now()
    result = DispatchResult()
    result.unknown = GroupSend.objects.filter(
        status=GroupSend.Status.SENDING, created_at__lt=timezone.now() - CUT_OFF
    ).update(status=GroupSend.Status.UNKNOWN, error="发送时进程中断，请在企业微信群发助手中核对")
    for schedule in GroupSchedule.objects.filter(is_active=True).order_by("pk"):
        slot = schedule.latest_slot(now)
        if slot is None or now - slot > GRACE:
            continue
        group_slot_send(schedule=schedule, slot=slot, gateway=gateway, result=result)
    return result


def groups_over_limit(chat_ids: list[str], slot: datetime) -> set[str]:
    """The groups that already had the month's quota of group messages (`month_quota`,
    the month of `slot` in Beijing time): those of every schedule's sends in that month
    that WeCom may deliver, as campaigns count a customer's. A send counts for a group
    unless WeCom refused it (fail_list) or reported it failed (2, 3); one still waiting
    for its owner, or being sent, or whose outcome is unknown counts: it may arrive.
    Reads the month's sends (a row per slot and owner: a few thousand) in full."""
    first = slot.astimezone(SHANGHAI).date().replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT chat FROM campaigns_groupsend s
            CROSS JOIN LATERAL jsonb_array_elements_text(s.chat_ids) AS chat
            WHERE s.occurrence >= %s AND s.occurrence < %s
              AND s.status IN ('sending', 'created', 'confirmed', 'unknown')
              AND NOT s.refused ? chat
              AND coalesce(s.results ->> chat, '0') NOT IN ('2', '3')
              AND chat = ANY(%s)
            GROUP BY chat HAVING count(*) >= %s
            """,
            [local_midnight(first), local_midnight(following), chat_ids, month_quota(slot)],
        )
        return {chat for (chat,) in cursor.fetchall()}


def group_slot_send(
    *, schedule: GroupSchedule, slot: datetime, gateway, result: DispatchResult
) -> None:
    """One slot of one schedule: per owner of its groups, claim (schedule, slot, owner) and
    call WeCom once. An owner who left (inactive in our sync, their groups awaiting
    inheritance, or unknown to WeCom) is recorded as such with their groups. A group that
    had the month's quota already is held back (WeCom would not deliver it)."""
    from campaigns.services import _attachments

    by_owner: dict[str, list[CustomerGroup]] = {}
    for group in schedule.groups.order_by("owner_userid", "chat_id"):
        by_owner.setdefault(group.owner_userid, []).append(group)
    over_limit = groups_over_limit(
        [group.chat_id for groups in by_owner.values() for group in groups], slot
    )
    active = set(
        Guide.objects.filter(wecom_userid__in=by_owner, is_active=True).values_list(
            "wecom_userid", flat=True
        )
    )
    for owner, groups in by_owner.items():
        # A full sync no longer lists the groups of an owner who left (WeCom lists groups
        # by their owners), so it marks them dismissed: an owner who left is reported with
        # all of their groups, never as "dismissed".
        owner_left = owner not in active or any(g.status in INHERITING for g in groups)
        chosen = [g.chat_id for g in groups if owner_left or not g.is_dismissed]
        held = [] if owner_left else [chat for chat in chosen if chat in over_limit]
        sendable = [chat for chat in chosen if chat not in held]
        send, created = GroupSend.objects.get_or_create(
            schedule=schedule,
            occurrence=slot,
            owner_userid=owner,
            defaults={
                "chat_ids": sendable[:MAX_GROUPS],
                "refused": [g.chat_id for g in groups if g.chat_id not in chosen]
                + sendable[MAX_GROUPS:],
                "over_limit": held,
            },
        )
        if not created:
            continue  # claimed by an earlier run: handed over, reported or cut off
        if owner_left:
            send.status = GroupSend.Status.OWNER_LEFT
            send.error = "群主已离职，群需由新群主继承后才能发送"
            send.save(update_fields=["status", "error"])
            result.owner_left += 1
            continue
        if not send.chat_ids:
            send.status = GroupSend.Status.FAILED
            send.error = (  # held back, or else dismissed: nothing to hand over
                f"所选的群本月已收满企业微信的群发上限（{month_quota(slot)} 条）"
                if held
                else "所选的群都已解散"
            )
            send.save(update_fields=["status", "error"])
            result.failed += 1
            continue
        try:
            sent = gateway.add_group_msg_template(
                sender=owner,
                chat_ids=send.chat_ids,
                text=schedule.text,
                attachments=_attachments(schedule.attachments),
            )
        except WeComError as error:
            gone = error.errcode in OWNER_GONE_ERRORS
            send.status = GroupSend.Status.OWNER_LEFT if gone else GroupSend.Status.FAILED
            send.error = f"企业微信：{error.errcode} {error.errmsg}"[:300]
            send.save(update_fields=["status", "error"])
            if gone:
                result.owner_left += 1
            else:
                result.failed += 1
            result.errors.append(f"{owner}: {error.errcode} {error.errmsg}")
            continue
        send.status, send.msgid = GroupSend.Status.CREATED, sent["msgid"]
        send.refused = send.refused + list(sent["fail_list"])
        send.save(update_fields=["status", "msgid", "refused"])
        result.sends += 1


def group_send_results(*, sends, gateway, now: datetime | None = None) -> dict:
    """What WeCom says of each send: the groups the owner sent to (1), and those that
    failed (2: the group is gone, 3: over WeCom's limit). A send becomes confirmed when
    any group was sent to. Statuses only move forward, so this is safe to run twice."""
    now = now or timezone.now()
    counts = {"confirmed": 0, "groups_sent": 0}
    for send in sends.filter(status__in=[GroupSend.Status.CREATED, GroupSend.Status.CONFIRMED]):
        rows = gateway.groupmsg_send_result(msgid=send.msgid, userid=send.owner_userid)
        results = {row["chat_id"]: row.get("status", 0) for row in rows if row.get("chat_id")}
        counts["groups_sent"] += sum(
            1 for chat, status in results.items() if status == 1 and send.results.get(chat) != 1
        )
        send.results = {**send.results, **results}
        fields = ["results"]
        if send.status == GroupSend.Status.CREATED and any(results.values()):
            send.status, send.confirmed_at = GroupSend.Status.CONFIRMED, now
            fields += ["status", "confirmed_at"]
            counts["confirmed"] += 1
        send.save(update_fields=fields)
    return counts


def recent_sends(now: datetime | None = None):
    """Sends whose results WeCom still keeps."""
    now = now or timezone.now()
    return GroupSend.objects.filter(created_at__gte=now - timedelta(days=RESULTS_DAYS))
