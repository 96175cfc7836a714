"""A campaign is handed to WeCom once by the real task on the real worker, checked against
the emulator's own record of the add_msg_template calls it received: when the task runs
twice (and a third run starts here while the worker's first is sending), and when the
worker's pool process is killed during a call (WeCom got the call, the worker never saw
the answer) and the task is delivered again to the pool's new process. Every WeCom call
takes a moment (the emulator's latency), so that the runs overlap."""

import itertools
import os
import signal
import threading
import time
from collections import Counter
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from campaigns.models import Campaign, CampaignMessage, CampaignRecipient
from campaigns.sending import CampaignBusy, campaign_prepare, campaign_send
from campaigns.tasks import send_campaign
from contacts import facts
from scrm.wecom.emulator import Config, generate
from scrm.wecom.gateway import WeComGateway
from tests.helpers import wait_for
from tests.wecom import CUSTOMERS, GUIDES, SEED

pytestmark = pytest.mark.django_db(transaction=True)

LATENCY = 0.3  # seconds each WeCom call takes
CALLS = "externalcontact/add_msg_template"


@pytest.fixture
def slow(emulator_server, settings, monkeypatch):
    """The session's emulator (the worker's WECOM_API_BASE too) with fresh data synced in
    full, its calls counted from here and each taking LATENCY seconds.

    The sync's follow-ups are not scheduled: the worker would run them (facts refresh,
    then retag and dashboards, on countdowns) during the test and the database flush
    after it, which deadlocks with them."""
    monkeypatch.setattr(facts, "schedule_facts_refresh", lambda: None)
    emulator, served = emulator_server
    emulator.data = generate(seed=SEED, guides=GUIDES, customers=CUSTOMERS)
    emulator.config = Config()
    emulator.clock = time.time
    emulator.faults.clear()
    emulator.revoke_tokens()
    settings.WECOM_API_BASE = served.base_url
    call_command("sync_wecom", "--full", "--inline", "--json", stdout=StringIO())
    facts.facts_refresh()
    with emulator.lock:
        emulator.calls.clear()
    emulator.config.latency = LATENCY
    yield emulator
    emulator.config.latency = 0.0


def _prepared() -> tuple[Campaign, Counter, set[tuple[str, str]]]:
    """An A/B campaign to the customers of two guides (each sent by whoever added them
    last), prepared. Returns it, its (guide, variant) tasks with their sizes, and its
    (guide, customer) pairs to send to."""
    campaign = Campaign.objects.create(
        name="周末福利",
        segment={"fact": "guide", "op": "any_of", "value": ["guide0001", "guide0002"]},
        text="周末会员福利：满 199 包邮",
        text_b="周末会员福利：第二件半价",
        status=Campaign.Status.SCHEDULED,
    )
    campaign_prepare(campaign=campaign)
    targeted = CampaignRecipient.objects.filter(campaign=campaign, status="targeted")
    groups = Counter(targeted.values_list("guide__wecom_userid", "variant"))
    assert len(groups) >= 6 and max(groups.values()) <= 10_000
    recipients = set(targeted.values_list("guide__wecom_userid", "customer__external_userid"))
    assert len(recipients) == sum(groups.values())
    return campaign, groups, recipients


def _tasks(emulator, campaign: Campaign) -> Counter:
    """The mass-message tasks WeCom created, by (sender, variant)."""
    return Counter(
        (sender, "b" if message["text"]["content"] == campaign.text_b else "a")
        for message in emulator.data.group_msgs.values()
        for sender in message["tasks"]
    )


def _received(emulator) -> Counter:
    """How many mass messages WeCom has for each (guide, customer)."""
    return Counter(
        (target["userid"], target["external_userid"])
        for message in emulator.data.group_msgs.values()
        for target in message["targets"]
    )


def test_sent_once_when_the_task_runs_twice_and_a_third_run_overlaps(slow, celery_worker):
    emulator = slow
    campaign, groups, recipients = _prepared()
    first, second = send_campaign.delay(campaign.pk), send_campaign.delay(campaign.pk)
    wait_for(lambda: CampaignMessage.objects.filter(campaign=campaign).exists(), interval=0.05)
    with pytest.raises(CampaignBusy):  # the worker's first run is sending
        campaign_send(campaign_id=campaign.pk, gateway=WeComGateway.from_settings())
    assert first.get(timeout=60)["messages"] == len(groups)
    assert second.get(timeout=60) == {  # found the campaign sent
        "messages": 0,
        "recipients": 0,
        "failed": 0,
        "unknown": 0,
        "skipped": True,
    }

    assert emulator.stats()[CALLS] == len(groups)
    assert _tasks(emulator, campaign) == Counter(dict.fromkeys(groups, 1))
    assert _received(emulator) == Counter(dict.fromkeys(recipients, 1))
    messages = CampaignMessage.objects.filter(campaign=campaign)
    assert sorted(messages.values_list("guide__wecom_userid", "variant", "status")) == sorted(
        (userid, variant, "created") for userid, variant in groups
    )
    assert {m.msgid for m in messages} == set(emulator.data.group_msgs)
    queued = CampaignRecipient.objects.filter(campaign=campaign, status="queued")
    assert set(queued.values_list("guide__wecom_userid", "customer__external_userid")) == (
        recipients
    )
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SENT


def _pool_processes(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_worker_killed_mid_call_sends_every_recipient_exactly_once(
    slow, celery_worker, monkeypatch
):
    emulator = slow
    campaign, groups, recipients = _prepared()
    # WeCom receives the third call, and creates its task only once the caller is dead.
    arrived, killed = threading.Event(), threading.Event()
    create, calls = emulator._externalcontact_add_msg_template, itertools.count(1)

    def third_after_the_kill(query: dict, body: dict) -> dict:
        if next(calls) == 3:
            arrived.set()
            killed.wait(timeout=30)
        return create(query, body)

    monkeypatch.setattr(emulator, "_externalcontact_add_msg_template", third_after_the_kill)
    pool = _pool_processes(celery_worker.pid)
    send_campaign.delay(campaign.pk)
    assert arrived.wait(timeout=60)
    messages = CampaignMessage.objects.filter(campaign=campaign)
    assert Counter(messages.values_list("status", flat=True)) == {"created": 2, "sending": 1}
    cut = messages.get(status="sending")
    for process in pool:
        os.kill(process, signal.SIGKILL)  # the pool process dies waiting for the answer
    killed.set()

    # Delivered again (acks late, rejected on a lost worker) to the pool's new process.
    wait_for(lambda: Campaign.objects.get(pk=campaign.pk).status == "sent", timeout=90)
    assert set(_pool_processes(celery_worker.pid)).isdisjoint(pool)
    assert emulator.stats()[CALLS] == len(groups)  # the cut-off call was not made again
    assert _tasks(emulator, campaign) == Counter(dict.fromkeys(groups, 1))
    assert _received(emulator) == Counter(dict.fromkeys(recipients, 1))
    # Ours: every task created with WeCom's msgid but the cut-off one, whose answer never
    # came: unknown (the page says to check in WeCom), its customers not marked queued.
    cut.refresh_from_db()
    assert (cut.status, cut.msgid) == ("unknown", "")
    created = messages.exclude(pk=cut.pk)
    assert Counter(created.values_list("status", flat=True)) == {"created": len(groups) - 1}
    assert {m.msgid for m in created} < set(emulator.data.group_msgs)
    statuses = Counter(
        CampaignRecipient.objects.filter(campaign=campaign)
        .exclude(status__in=["held", "holdout"])
        .values_list("status", flat=True)
    )
    cut_size = groups[(cut.guide.wecom_userid, cut.variant)]
    assert statuses == {"queued": len(recipients) - cut_size, "targeted": cut_size}
