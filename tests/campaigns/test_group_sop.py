"""Group SOP (群 SOP) against the emulator: a slot handed to WeCom once per group owner
(add_msg_template, chat_type group, the owner as sender) however often the dispatch runs,
on the real worker too; the owners' confirmations fetched back; a group whose owner left
reported with the reason; the slots of daily and weekly schedules; and the pages, where
only operators write and guides see nothing."""

import calendar
from datetime import UTC, datetime, time, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from campaigns.group_sop import (
    group_send_results,
    group_sends_dispatch,
    groups_over_limit,
    recent_sends,
)
from campaigns.models import SHANGHAI, GroupSchedule, GroupSend
from campaigns.tasks import send_due_group_messages
from contacts.models import CustomerGroup, Guide
from scrm.wecom.gateway import WeComGateway
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db

LINK = {"type": "link", "title": "今日福利", "url": "https://example.com/today"}
# as sop.services converts attachments for every send (no picture, no description)
SENT_AS = {
    "msgtype": "link",
    "link": {"title": "今日福利", "url": "https://example.com/today", "picurl": "", "desc": ""},
}


def _sync() -> None:
    call_command("sync_wecom", "--full", "--inline", "--json", stdout=StringIO())


def _groups(emulator) -> dict[str, list[str]]:
    """Three new groups in WeCom: two of the first guide's, one of the second's, synced."""
    first, second = (user["userid"] for user in emulator.data.users[:2])
    owned = {first: [], second: []}
    for owner, name in ((first, "福利一群"), (first, "福利二群"), (second, "老客群")):
        chat_id = f"wrsop{len(owned[first]) + len(owned[second]):026d}"
        emulator.group_created(owner, name=name, chat_id=chat_id)
        owned[owner].append(chat_id)
    _sync()
    return owned


def _schedule(chat_ids: list[str], *, now: datetime) -> tuple[GroupSchedule, datetime]:
    """A daily schedule whose slot was five minutes ago; returns it and that slot."""
    slot = (now - timedelta(minutes=5)).astimezone(SHANGHAI).replace(second=0, microsecond=0)
    schedule = GroupSchedule.objects.create(
        name="早安福利",
        text="早安！今天的福利在这里👇",
        attachments=[LINK],
        repeat=GroupSchedule.Repeat.DAILY,
        slot_time=slot.time(),
        active_since=now - timedelta(hours=1),
    )
    schedule.groups.set(CustomerGroup.objects.filter(chat_id__in=chat_ids))
    return schedule, slot


def _template_calls(emulator) -> int:
    return emulator.stats().get("externalcontact/add_msg_template", 0)


def test_a_slot_is_sent_once_per_owner_even_when_dispatched_twice(emulator):
    owned = _groups(emulator)
    now = timezone.now()
    schedule, slot = _schedule([c for chats in owned.values() for c in chats], now=now)
    gateway = WeComGateway.from_settings()

    first = group_sends_dispatch(gateway=gateway, now=now)
    assert (first.sends, first.owner_left, first.failed) == (2, 0, 0)
    assert _template_calls(emulator) == 2
    again = group_sends_dispatch(gateway=gateway, now=now + timedelta(seconds=30))
    assert again.sends == 0 and _template_calls(emulator) == 2

    sends = {send.owner_userid: send for send in GroupSend.objects.all()}
    assert set(sends) == set(owned)
    for owner, send in sends.items():
        assert (send.occurrence, send.status, send.chat_ids) == (slot, "created", owned[owner])
        message = emulator.data.group_msgs[send.msgid]
        assert message["chat_type"] == "group"
        assert [(t["userid"], t["chat_id"]) for t in message["targets"]] == [
            (owner, chat_id) for chat_id in owned[owner]
        ]
        assert message["text"] == {"content": "早安！今天的福利在这里👇"}
        assert message["attachments"] == [SENT_AS]

    # The first owner confirms in WeCom; the results say both of their groups got it.
    first_owner, second_owner = owned
    emulator.guide_confirms_send(sends[first_owner].msgid, first_owner)
    counts = group_send_results(sends=recent_sends(), gateway=gateway)
    assert counts == {"confirmed": 1, "groups_sent": 2}
    confirmed = GroupSend.objects.get(owner_userid=first_owner)
    assert confirmed.status == "confirmed"
    assert confirmed.results == {chat_id: 1 for chat_id in owned[first_owner]}
    assert GroupSend.objects.get(owner_userid=second_owner).status == "created"
    assert group_send_results(sends=recent_sends(), gateway=gateway) == {
        "confirmed": 0,
        "groups_sent": 0,
    }

    # The next day's slot is another send per owner; a slot missed by hours is not sent.
    group_sends_dispatch(gateway=gateway, now=now + timedelta(days=1))
    assert _template_calls(emulator) == 4
    assert GroupSend.objects.filter(occurrence=slot + timedelta(days=1)).count() == 2
    late = group_sends_dispatch(gateway=gateway, now=now + timedelta(days=2, hours=2))
    assert late.sends == 0 and _template_calls(emulator) == 4


def _resign(emulator, userid: str) -> None:
    """The member leaves the corp: WeCom no longer knows them and their groups wait for
    inheritance (groupchat/list status 1)."""
    with emulator.lock:
        emulator.data.users = [u for u in emulator.data.users if u["userid"] != userid]
        emulator.data.follows.pop(userid, None)
        emulator.data.touch()
        for chat_id, group in emulator.data.groups.items():
            if group["owner"] == userid:
                emulator.data.group_status[chat_id] = 1


def test_a_group_whose_owner_left_is_reported(emulator, client_for, operator):
    owned = _groups(emulator)
    first, second = owned
    now = timezone.now()
    schedule, slot = _schedule([c for chats in owned.values() for c in chats], now=now)
    gateway = WeComGateway.from_settings()

    # Left before the slot, and our sync knows: reported without a call.
    _resign(emulator, second)
    _sync()
    assert not Guide.objects.get(wecom_userid=second).is_active
    result = group_sends_dispatch(gateway=gateway, now=now)
    assert (result.sends, result.owner_left) == (1, 1)
    assert _template_calls(emulator) == 1
    left = GroupSend.objects.get(owner_userid=second)
    assert (left.status, left.chat_ids, left.msgid) == ("owner_left", owned[second], "")
    assert "离职" in left.error

    # Left since our last sync: WeCom refuses the sender, and that is reported too.
    _resign(emulator, first)
    result = group_sends_dispatch(gateway=gateway, now=now + timedelta(days=1))
    assert (result.sends, result.owner_left) == (0, 2)  # both, each slot
    gone = GroupSend.objects.get(owner_userid=first, occurrence=slot + timedelta(days=1))
    assert gone.status == "owner_left" and "60111" in gone.error
    # … and not tried again by a second run of the same slot
    group_sends_dispatch(gateway=gateway, now=now + timedelta(days=1, minutes=1))
    assert _template_calls(emulator) == 2

    page = client_for(operator).get(reverse("group_schedule_detail", args=[schedule.pk]))
    body = page.content.decode()
    row = body.split(f'data-send="{left.pk}"')[1].split("</tr>")[0]
    assert "群主已离职" in row and "老客群" in row and second in row
    assert body.count('data-status="owner_left"') == 3


@pytest.mark.django_db(transaction=True)
def test_the_beat_task_twice_on_the_worker_sends_once(celery_worker, emulator):
    owned = _groups(emulator)
    now = timezone.now()
    _schedule([c for chats in owned.values() for c in chats], now=now)
    first = send_due_group_messages.delay()
    second = send_due_group_messages.delay()
    results = [first.get(timeout=60), second.get(timeout=60)]
    assert sorted(r["sends"] for r in results) == [0, 2]
    assert _template_calls(emulator) == 2
    wait_for(lambda: GroupSend.objects.filter(status="created").count() == 2)
    assert GroupSend.objects.count() == 2


# -- slots --------------------------------------------------------------------------------


def _at(text: str) -> datetime:
    """A Shanghai wall-clock time."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def test_the_slots_of_daily_weekly_and_one_off_schedules():
    since = _at("2026-11-30 00:00")  # a Monday
    daily = GroupSchedule(repeat="daily", slot_time=time(9, 30), active_since=since)
    assert daily.latest_slot(_at("2026-12-02 09:29")) == _at("2026-12-01 09:30")
    assert daily.latest_slot(_at("2026-12-02 09:30")) == _at("2026-12-02 09:30")
    assert daily.next_slot(_at("2026-12-02 09:30")) == _at("2026-12-03 09:30")
    assert daily.latest_slot(_at("2026-11-30 09:00")) is None  # before it was saved
    weekly = GroupSchedule(
        repeat="weekly", slot_time=time(20, 0), weekdays=[2, 5],
        active_since=since,
    )  # fmt: skip
    assert weekly.latest_slot(_at("2026-12-04 19:59")) == _at("2026-12-01 20:00")  # Tue
    assert weekly.latest_slot(_at("2026-12-04 20:00")) == _at("2026-12-04 20:00")  # Fri
    assert weekly.next_slot(_at("2026-12-04 20:00")) == _at("2026-12-08 20:00")
    assert weekly.latest_slot(_at("2026-12-01 00:00").astimezone(UTC)) is None
    once = GroupSchedule(repeat="once", send_at=_at("2026-12-03 10:00"), active_since=since)
    assert once.latest_slot(_at("2026-12-03 09:59")) is None
    assert once.latest_slot(_at("2026-12-03 10:05")) == _at("2026-12-03 10:00")
    assert once.next_slot(_at("2026-12-03 10:05")) is None


# -- pages --------------------------------------------------------------------------------


def _form(groups, **extra) -> dict:
    return {
        "name": "晚安群发",
        "groups": [group.pk for group in groups],
        "text": "晚安，明天见",
        "attachments": "[]",
        "repeat": "weekly",
        "slot_time": "21:00",
        "weekdays": ["1", "3"],
        "is_active": "on",
        **extra,
    }


@pytest.fixture
def sop_groups(db):
    return [
        CustomerGroup.objects.create(chat_id="wrP1", name="一群", owner_userid="guide0001"),
        CustomerGroup.objects.create(chat_id="wrP2", name="二群", owner_userid="guide0002"),
    ]


def test_an_operator_schedules_messages_to_chosen_groups(client_for, operator, sop_groups):
    client = client_for(operator)
    before = timezone.now()
    response = client.post(reverse("group_schedule_new"), _form(sop_groups))
    schedule = GroupSchedule.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("group_schedule_detail", args=[schedule.pk])
    assert (schedule.repeat, schedule.slot_time.strftime("%H:%M"), schedule.weekdays) == (
        "weekly",
        "21:00",
        [1, 3],
    )
    assert set(schedule.groups.values_list("chat_id", flat=True)) == {"wrP1", "wrP2"}
    assert schedule.active_since >= before and schedule.created_by == operator
    listing = client.get(reverse("group_schedules")).content.decode()
    assert "晚安群发" in listing and "每周周一、周三 21:00" in listing

    edit = client.post(
        reverse("group_schedule_edit", args=[schedule.pk]),
        _form(sop_groups[:1], repeat="once", send_at="2099-01-01T08:00"),
    )
    assert edit.status_code == 302
    schedule.refresh_from_db()
    assert (schedule.repeat, schedule.slot_time, schedule.weekdays) == ("once", None, [])
    assert timezone.localtime(schedule.send_at).strftime("%Y-%m-%d %H:%M") == "2099-01-01 08:00"
    assert list(schedule.groups.values_list("chat_id", flat=True)) == ["wrP1"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"weekdays": []}, "每周发送请选择至少一天"),
        ({"repeat": "once", "send_at": "2020-01-01T08:00"}, "请选择一个将来的发送时间"),
        ({"text": ""}, "内容不能为空"),
        ({"repeat": "daily", "slot_time": ""}, "请选择每次发送的时刻"),
    ],
)
def test_a_refused_schedule_shows_the_reason_and_keeps_nothing(
    client_for, operator, sop_groups, change, reason
):
    response = client_for(operator).post(reverse("group_schedule_new"), _form(sop_groups, **change))
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert not GroupSchedule.objects.exists()


def test_a_guide_cannot_see_or_edit_schedules(
    client_for, guide_user, manager, sop_groups, django_capture_on_commit_callbacks
):
    schedule = GroupSchedule.objects.create(
        name="早安", text="早", repeat="daily", slot_time=time(8),
        active_since=timezone.now(),
    )  # fmt: skip
    schedule.groups.set(sop_groups)
    pages = [
        reverse("group_schedules"),
        reverse("group_schedule_new"),
        reverse("group_schedule_detail", args=[schedule.pk]),
        reverse("group_schedule_edit", args=[schedule.pk]),
    ]
    writes = [
        (reverse("group_schedule_new"), _form(sop_groups, name="导购的")),
        (reverse("group_schedule_edit", args=[schedule.pk]), _form(sop_groups, name="改名")),
        (reverse("group_schedule_refresh", args=[schedule.pk]), {}),
    ]
    guide = client_for(guide_user)
    for url in pages:
        assert guide.get(url).status_code == 403, url
    with django_capture_on_commit_callbacks() as enqueued:
        for url, body in writes:
            assert guide.post(url, body).status_code == 403, url
    reader = client_for(manager)
    for url in pages:
        assert reader.get(url).status_code == 200, url
    editor = reader.get(pages[3]).content.decode()
    assert 'id="schedule-save"' not in editor and "没有修改权限" in editor
    for url, body in writes:
        assert reader.post(url, body).status_code == 403, url
    schedule.refresh_from_db()
    assert GroupSchedule.objects.count() == 1 and schedule.name == "早安"
    assert not GroupSend.objects.exists() and enqueued == []


def test_unknown_schedules_are_404(client_for, operator):
    client = client_for(operator)
    for name in ("group_schedule_detail", "group_schedule_edit"):
        assert client.get(reverse(name, args=[999])).status_code == 404
    assert client.post(reverse("group_schedule_refresh", args=[999])).status_code == 404


def test_the_page_shows_confirmed_groups_after_a_refresh(emulator, client_for, operator):
    owned = _groups(emulator)
    first = next(iter(owned))
    now = timezone.now()
    schedule, _slot = _schedule(owned[first], now=now)
    group_sends_dispatch(gateway=WeComGateway.from_settings(), now=now)
    send = GroupSend.objects.get()
    emulator.guide_confirms_send(send.msgid, first)
    client = client_for(operator)
    response = client.post(reverse("group_schedule_refresh", args=[schedule.pk]), follow=True)
    body = response.content.decode()
    assert "已刷新：1 个群主新确认，2 个群新收到。" in body
    row = body.split(f'data-send="{send.pk}"')[1].split("</tr>")[0]
    assert "群主已发送" in row and "2 / 2" in row and "福利一群 ✓" in row


def test_a_group_that_had_the_months_quota_is_held_back(emulator, client_for, operator):
    """WeCom delivers a group as many group messages a month as the month has days (Beijing
    time; the emulator's month_days policy): a group that had them is not handed over, and
    its owner's other groups are."""
    owned = _groups(emulator)
    first = next(iter(owned))
    full, other = owned[first]
    now = timezone.now()
    local = now.astimezone(SHANGHAI)
    quota = calendar.monthrange(local.year, local.month)[1]
    gateway = WeComGateway.from_settings()
    for number in range(quota):
        assert groups_over_limit([full, other], now) == set(), number
        one_off = GroupSchedule.objects.create(
            name=f"第 {number + 1} 条",
            text="本月福利",
            repeat=GroupSchedule.Repeat.ONCE,
            send_at=now - timedelta(milliseconds=number + 1),  # this month, already due
            active_since=now - timedelta(hours=1),
        )
        one_off.groups.set(CustomerGroup.objects.filter(chat_id=full))
        assert group_sends_dispatch(gateway=gateway, now=now).sends == 1
        emulator.guide_confirms_send(GroupSend.objects.get(schedule=one_off).msgid, first)
    assert group_send_results(sends=recent_sends(), gateway=gateway)["groups_sent"] == quota
    assert groups_over_limit([full, other], now) == {full}

    schedule, slot = _schedule([full, other], now=now)
    result = group_sends_dispatch(gateway=gateway, now=now)
    assert (result.sends, result.failed) == (1, 0)
    send = GroupSend.objects.get(schedule=schedule)
    assert (send.chat_ids, send.over_limit, send.refused) == ([other], [full], [])
    targets = emulator.data.group_msgs[send.msgid]["targets"]
    assert [t["chat_id"] for t in targets] == [other]
    row = (
        client_for(operator)
        .get(reverse("group_schedule_detail", args=[schedule.pk]))
        .content.decode()
        .split(f'data-send="{send.pk}"')[1]
        .split("</tr>")[0]
    )
    assert "福利一群（本月已收满群发上限，未交给企业微信）" in row

    # Only held-back groups: nothing is handed over, and the reason says why.
    only_full, _slot = _schedule([full], now=now)
    group_sends_dispatch(gateway=gateway, now=now)
    held = GroupSend.objects.get(schedule=only_full)
    assert (held.status, held.msgid, held.over_limit) == ("failed", "", [full])
    assert held.error == f"所选的群本月已收满企业微信的群发上限（{quota} 条）"

    # WeCom agrees: one more message to the group is not delivered (status 3).
    extra = gateway.add_group_msg_template(
        sender=first, chat_ids=[full], text="多一条", attachments=[]
    )
    emulator.guide_confirms_send(extra["msgid"], first)
    results = gateway.groupmsg_send_result(msgid=extra["msgid"], userid=first)
    assert [(r["chat_id"], r["status"]) for r in results] == [(full, 3)]


# -- the demo -----------------------------------------------------------------------------


def test_the_demo_seeds_group_moves_and_schedules(emulator):
    from campaigns.groups import group_stats
    from contacts.models import CustomerGroupEvent

    before = CustomerGroupEvent.objects.count()  # the full sync's joins
    call_command("seed_demo_campaigns", stdout=StringIO())
    # as WeCom users: customers joined and left through the emulator, recorded by the
    # callback handler
    moves = CustomerGroupEvent.objects.filter(source="callback")
    assert moves.filter(kind="joined").exists() and moves.filter(kind="left").exists()
    assert CustomerGroupEvent.objects.count() == before + moves.count()
    for chat_id, group in emulator.data.groups.items():
        assert set(
            CustomerGroup.objects.get(chat_id=chat_id).members.values_list("userid", flat=True)
        ) == {member["userid"] for member in group["member_list"]}
    now = timezone.now()
    rows = group_stats(now - timedelta(days=1), now + timedelta(seconds=1))
    assert sum(row["quits"] for row in rows) == moves.filter(kind="left").count()
    assert sorted(GroupSchedule.objects.values_list("name", "repeat")) == [
        ("今晚直播预告", "once"),
        ("早安福利", "daily"),
    ]
    # run again (a second `make demo`): nothing more
    count = CustomerGroupEvent.objects.count()
    call_command("seed_demo_campaigns", stdout=StringIO())
    assert CustomerGroupEvent.objects.count() == count and GroupSchedule.objects.count() == 2
