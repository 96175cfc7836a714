"""Customer group statistics: size, joins, quits and the quit rate, buyers — in SQL,
against a recomputation from the membership timeline they were built from; and the join
/ quit events the sync writer records, through the emulator's simulated members joining
and leaving, picked up by a full sync and by the callback handler."""

import random
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from campaigns.groups import group_stats
from contacts.models import Customer, CustomerGroup, CustomerGroupEvent, CustomerGroupMember
from contacts.services import group_refresh
from scrm.wecom.gateway import WeComGateway
from tests.contacts.factories import CustomerFactory, OrderFactory

pytestmark = pytest.mark.django_db


# -- group_stats against a recomputation --------------------------------------------------


def _timeline(rng: random.Random, now, customers: list[Customer]) -> list[dict]:
    """Membership spells of hand-built groups: who was in which group from when to when
    (None: still in), over the last 90 days; some members date from before events were
    recorded (no joined event), some are staff or externals who are not our customers."""
    spells = []
    for number in range(6):
        group = CustomerGroup.objects.create(
            chat_id=f"wrtest{number:04d}",
            name=f"福利群 {number}",
            owner_userid=f"guide000{1 + number % 2}",
            is_dismissed=number == 5,
        )
        spells.append(
            {
                "group": group,
                "userid": "guide0001",
                "type": 1,
                "customer": None,
                "joined": now - timedelta(days=200),
                "left": None,
                "legacy": True,
            }
        )
        for customer in rng.sample(customers, k=rng.randint(4, 14)):
            joined = now - timedelta(days=rng.uniform(0, 90))
            left = joined + timedelta(days=rng.uniform(0, 60)) if rng.random() < 0.4 else None
            if left is not None and left >= now:
                left = None
            spells.append(
                {
                    "group": group,
                    "userid": customer.external_userid,
                    "type": 2,
                    "customer": customer,
                    "joined": joined,
                    "left": left,
                    "legacy": False,
                }
            )
            if left is not None and rng.random() < 0.3:  # came back
                again = left + timedelta(days=rng.uniform(0, 5))
                if again < now:
                    spells.append({**spells[-1], "joined": again, "left": None})
        for index in range(rng.randint(1, 4)):  # in the group, not our customers
            joined = now - timedelta(days=rng.uniform(0, 90))
            left = joined + timedelta(days=3) if index == 0 else None
            spells.append(
                {
                    "group": group,
                    "userid": f"wmstranger{number}{index}",
                    "type": 2,
                    "customer": None,
                    "joined": joined,
                    "left": left if left and left < now else None,
                    "legacy": False,
                }
            )
        for index in range(2):  # members since before events were recorded
            customer = rng.choice(customers)
            if any(s["group"] == group and s["customer"] == customer for s in spells):
                continue
            spells.append(
                {
                    "group": group,
                    "userid": customer.external_userid,
                    "type": 2,
                    "customer": customer,
                    "joined": now - timedelta(days=300 + index),
                    "left": None,
                    "legacy": True,
                }
            )
    return spells


def _store(spells: list[dict]) -> None:
    for spell in spells:
        common = {
            "group": spell["group"],
            "userid": spell["userid"],
            "type": spell["type"],
            "customer": spell["customer"],
        }
        if not spell["legacy"]:
            CustomerGroupEvent.objects.create(
                **common, kind="joined", at=spell["joined"], source="sync"
            )
        if spell["left"] is not None:
            CustomerGroupEvent.objects.create(
                **common, kind="left", at=spell["left"], source="callback"
            )
        else:
            CustomerGroupMember.objects.create(**common, join_time=spell["joined"])


def _recompute(spells, orders, start, end, *, include_dismissed=False, owners=None) -> list[dict]:
    paid = [
        o for o in orders if o.status in ("paid", "partially_refunded") and start <= o.paid_at < end
    ]
    buyers = {o.customer_id for o in paid}
    expected = []
    for group in sorted({s["group"] for s in spells}, key=lambda g: g.pk):
        if group.is_dismissed and not include_dismissed:
            continue
        if owners is not None and group.owner_userid not in owners:
            continue
        mine = [s for s in spells if s["group"] == group]
        present = [s for s in mine if s["left"] is None]
        at_start = sum(
            1 for s in mine if s["joined"] < start and (s["left"] is None or s["left"] >= start)
        )
        joins = sum(1 for s in mine if not s["legacy"] and start <= s["joined"] < end)
        quits = sum(1 for s in mine if s["left"] is not None and start <= s["left"] < end)
        in_group = {s["customer"].pk for s in present if s["customer"] is not None}
        expected.append(
            {
                "group_id": group.pk,
                "chat_id": group.chat_id,
                "members": len(present),
                "customers": sum(1 for s in present if s["customer"] is not None),
                "joins": joins,
                "quits": quits,
                "size_at_start": at_start,
                "quit_rate": quits / (at_start + joins) if at_start + joins else None,
                "buyers": len(in_group & buyers),
                "revenue": sum(
                    (o.amount - o.refund_amount for o in paid if o.customer_id in in_group),
                    Decimal(0),
                ),
            }
        )
    return expected


def _approx(rows: list[dict]) -> list[dict]:
    return [
        {**row, "quit_rate": None if row["quit_rate"] is None else pytest.approx(row["quit_rate"])}
        for row in rows
    ]


def test_group_stats_match_a_recomputation_from_the_timeline():
    rng = random.Random(7)
    now = timezone.now()
    customers = CustomerFactory.create_batch(40)
    spells = _timeline(rng, now, customers)
    _store(spells)
    orders = []
    for customer in rng.sample(customers, k=25):
        for _ in range(rng.randint(1, 3)):
            status = rng.choice(["paid", "paid", "partially_refunded", "refunded", "cancelled"])
            amount = Decimal(rng.randint(50, 900))
            orders.append(
                OrderFactory(
                    customer=customer,
                    paid_at=now - timedelta(days=rng.uniform(0, 90)),
                    status=status,
                    amount=amount,
                    refund_amount=Decimal(20) if status == "partially_refunded" else Decimal(0),
                )
            )
    orders.append(OrderFactory(customer=None, paid_at=now - timedelta(days=20)))  # unmatched
    windows = [
        (now - timedelta(days=30), now - timedelta(days=10)),  # ended before now
        (now - timedelta(days=60), now + timedelta(seconds=1)),
        (now - timedelta(days=120), now - timedelta(days=100)),  # before every event
    ]
    keys = [
        "group_id",
        "chat_id",
        "members",
        "customers",
        "joins",
        "quits",
        "size_at_start",
        "quit_rate",
        "buyers",
        "revenue",
    ]
    seen = 0
    for start, end in windows:
        got = [{k: row[k] for k in keys} for row in group_stats(start, end)]
        assert got == _approx(_recompute(spells, orders, start, end))
        seen += sum(row["joins"] + row["quits"] + row["buyers"] for row in got)
    assert seen > 20  # the windows do see joins, quits and buyers
    assert len(group_stats(*windows[0])) == 5  # the dismissed group is left out …
    with_dismissed = group_stats(*windows[0], include_dismissed=True)
    assert [r["is_dismissed"] for r in with_dismissed].count(True) == 1  # … unless asked
    assert [{k: row[k] for k in keys} for row in with_dismissed] == _approx(
        _recompute(spells, orders, *windows[0], include_dismissed=True)
    )
    # a guide's view: only the groups they own
    mine = group_stats(*windows[1], owners=["guide0002"])
    assert {row["owner_userid"] for row in mine} == {"guide0002"}
    assert [{k: row[k] for k in keys} for row in mine] == _approx(
        _recompute(spells, orders, *windows[1], owners=["guide0002"])
    )
    assert sum(row["revenue"] for row in mine) > 0


def test_an_empty_group_has_no_quit_rate():
    CustomerGroup.objects.create(chat_id="wrempty", owner_userid="guide0001")
    now = timezone.now()
    (row,) = group_stats(now - timedelta(days=7), now)
    assert (row["members"], row["joins"], row["quits"], row["quit_rate"]) == (0, 0, 0, None)


# -- the events, through the emulator -----------------------------------------------------


def _sync() -> None:
    call_command("sync_wecom", "--full", "--inline", "--json", stdout=StringIO())


def _moves(emulator) -> tuple[str, str, str]:
    """A group, a customer member who will leave it and a customer (ours) who will join."""
    chat_id, group = next(iter(emulator.data.groups.items()))
    present = {m["userid"] for m in group["member_list"]}
    leaver = next(m["userid"] for m in group["member_list"] if m["type"] == 2)
    joiner = next(e for e in emulator.data.customers if e not in present)
    return chat_id, leaver, joiner


def test_a_full_sync_records_who_joined_and_who_left(emulator):
    # (the fixture synced the emulator's data in full)
    groups = emulator.data.groups
    first = list(CustomerGroupEvent.objects.select_related("group"))
    # the first sync saw every member arrive, at WeCom's join time
    assert sorted((e.group.chat_id, e.userid, e.at.timestamp()) for e in first) == sorted(
        (chat_id, m["userid"], m["join_time"])
        for chat_id, g in groups.items()
        for m in g["member_list"]
    )
    assert {(e.kind, e.source) for e in first} == {("joined", "sync")}
    chat_id, leaver, joiner = _moves(emulator)
    _sync()  # nothing changed: nothing recorded
    assert CustomerGroupEvent.objects.count() == len(first)
    before = CustomerGroupEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    start = timezone.now()
    size = CustomerGroupMember.objects.filter(group__chat_id=chat_id).count()

    emulator.group_member_joins(chat_id, joiner, join_scene=3)
    emulator.group_member_leaves(chat_id, leaver)
    _sync()

    new = CustomerGroupEvent.objects.filter(pk__gt=before)
    assert sorted(new.values_list("kind", "userid", "source")) == [
        ("joined", joiner, "sync"),
        ("left", leaver, "sync"),
    ]
    joined = new.get(kind="joined")
    wecom_time = next(
        m["join_time"]
        for m in emulator.data.groups[chat_id]["member_list"]
        if m["userid"] == joiner
    )
    assert joined.at.timestamp() == wecom_time
    assert joined.customer == Customer.objects.get(external_userid=joiner)
    assert new.get(kind="left").customer == Customer.objects.get(external_userid=leaver)
    assert not CustomerGroupMember.objects.filter(group__chat_id=chat_id, userid=leaver).exists()

    OrderFactory(customer=joined.customer, paid_at=timezone.now(), amount=Decimal("199"))
    stats = {
        r["chat_id"]: r
        for r in group_stats(start - timedelta(seconds=1), timezone.now() + timedelta(seconds=1))
    }
    row = stats[chat_id]
    assert (row["joins"], row["quits"], row["size_at_start"], row["members"]) == (1, 1, size, size)
    assert row["quit_rate"] == pytest.approx(1 / (size + 1))
    assert row["buyers"] == 1
    others = [r for c, r in stats.items() if c != chat_id]
    assert all(r["joins"] == r["quits"] == 0 and r["quit_rate"] == 0 for r in others)


def test_the_callback_handler_records_them_once(emulator):
    before = CustomerGroupEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    chat_id, leaver, joiner = _moves(emulator)
    gateway = WeComGateway.from_settings()

    emulator.group_member_joins(chat_id, joiner)
    group_refresh(
        event={"ChatId": chat_id, "ChangeType": "update", "UpdateDetail": "add_member"},
        gateway=gateway,
    )
    emulator.group_member_leaves(chat_id, leaver, quit_scene=1)
    group_refresh(
        event={"ChatId": chat_id, "ChangeType": "update", "UpdateDetail": "del_member"},
        gateway=gateway,
    )
    # the same callback again (WeCom retries), then a full sync: nothing more
    group_refresh(
        event={"ChatId": chat_id, "ChangeType": "update", "UpdateDetail": "del_member"},
        gateway=gateway,
    )
    _sync()

    new = CustomerGroupEvent.objects.filter(pk__gt=before).order_by("pk")
    assert list(new.values_list("kind", "userid", "source", "group__chat_id")) == [
        ("joined", joiner, "callback", chat_id),
        ("left", leaver, "callback", chat_id),
    ]
    left = new.get(kind="left")
    assert timezone.now() - left.at < timedelta(minutes=1)
    chat = CustomerGroup.objects.get(chat_id=chat_id)
    assert (
        chat.member_count
        == chat.members.count()
        == len(emulator.data.groups[chat_id]["member_list"])
    )
