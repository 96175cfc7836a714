"""The real dispatch task on the real worker, its pool process killed in the middle of a
batch: the batch rolls back, the task is delivered again, and every due touchpoint
becomes exactly one task, its automatic step sent exactly once."""

import os
import signal
import time as clock
from collections import Counter
from datetime import UTC, datetime, time, timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from contacts.facts import facts_refresh
from contacts.models import Customer, Guide, Relationship, Store
from scrm.wecom.emulator import Config, generate
from sop import triggers
from sop.models import AutomaticSend, ContactPolicy, SopPlan, SopStep, Touchpoint
from sop.tasks import dispatch_due
from tests.helpers import wait_for
from tests.wecom import CUSTOMERS, GUIDES, SEED
from tests.worker_tasks import DISPATCH_PAUSE, DISPATCH_PAUSED

pytestmark = pytest.mark.django_db(transaction=True)

BATCH = 100  # SOP_DISPATCH_BATCH of the test worker (tests/conftest.py)
STEPS = 3  # the last one automatic


@pytest.fixture
def emulator(emulator_server, settings):
    """The session's emulator (the worker's too), reset to its seeded data."""
    emulator, served = emulator_server
    emulator.data = generate(seed=SEED, guides=GUIDES, customers=CUSTOMERS)
    emulator.config = Config()
    emulator.clock = clock.time
    emulator.faults.clear()
    emulator.revoke_tokens()
    with emulator.lock:
        emulator.calls.clear()
        emulator.per_second.clear()
    settings.WECOM_API_BASE = served.base_url
    return emulator


def _contacts_from(emulator) -> list[int]:
    """The emulator's guides, customers and relationships, as the sync would store them."""
    store = Store.objects.create(code="SH001", name="上海静安店")
    guides = {
        user["userid"]: Guide.objects.create(
            wecom_userid=user["userid"], name=user["name"], store=store
        )
        for user in emulator.data.users
    }
    customers = {
        external_userid: Customer.objects.create(
            external_userid=external_userid, name=contact["name"], type=1, is_member=True
        )
        for external_userid, contact in emulator.data.customers.items()
    }
    Relationship.objects.bulk_create(
        Relationship(
            customer=customers[follow["external_userid"]],
            guide=guides[userid],
            remark=follow["remark"],
            added_at=datetime.fromtimestamp(follow["createtime"], tz=UTC),
        )
        for userid, follows in emulator.data.follows.items()
        for follow in follows
    )
    facts_refresh()
    return [customer.pk for customer in customers.values()]


def test_dispatch_killed_mid_batch_gives_each_due_touchpoint_one_task(celery_worker, emulator):
    customer_ids = _contacts_from(emulator)
    ContactPolicy.objects.create(
        max_per_day=STEPS, max_per_week=STEPS, quiet_start=time(0), quiet_end=time(0)
    )
    plan = SopPlan.objects.create(
        name="新客欢迎", trigger=SopPlan.Trigger.MANUAL, started_at=timezone.now()
    )
    for position in range(1, STEPS + 1):
        SopStep.objects.create(
            plan=plan,
            position=position,
            offset_days=position - 1,
            script="{称呼}您好，我是{导购姓名}",
            is_automatic=position == STEPS,
        )
    assert triggers.manual(plan=plan, customer_ids=customer_ids) == len(customer_ids)
    # Every step due a moment ago, its window open all day (whatever the time of day).
    now = timezone.now()
    Touchpoint.objects.update(
        due_at=now - timedelta(minutes=10), window_ends_at=now + timedelta(days=1)
    )
    due = len(customer_ids) * STEPS
    assert due > 10 * BATCH
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.set(DISPATCH_PAUSE, 3)  # two batches committed, the third written, then killed

    dispatch_due.delay()
    pid = int(wait_for(lambda: client.get(DISPATCH_PAUSED), timeout=60))
    assert Touchpoint.objects.filter(status="task").count() == 2 * BATCH
    assert not AutomaticSend.objects.exclude(touchpoint__status="task").exists()
    os.kill(pid, signal.SIGKILL)  # the pool process dies before the third COMMIT

    # Delivered again (acks late, rejected on a lost worker): the rest is dispatched.
    wait_for(lambda: not Touchpoint.objects.filter(status="planned").exists(), timeout=60)
    assert int(client.get("attempts:dispatch_due")) == 2
    assert Counter(Touchpoint.objects.values_list("status", flat=True)) == {"task": due}
    automatic = Touchpoint.objects.filter(step__is_automatic=True)
    assert automatic.count() == len(customer_ids)
    assert set(AutomaticSend.objects.values_list("touchpoint_id", flat=True)) == set(
        automatic.values_list("id", flat=True)
    )
    # Each automatic step sent once (the killed batch's sends were never queued).
    wait_for(
        lambda: not AutomaticSend.objects.exclude(status=AutomaticSend.Status.SENT).exists(),
        timeout=60,
    )
    assert emulator.stats()["externalcontact/add_msg_template"] == len(customer_ids)
    targets = Counter(
        target["external_userid"]
        for message in emulator.data.group_msgs.values()
        for target in message["targets"]
    )
    assert len(targets) == len(customer_ids) and set(targets.values()) == {1}
