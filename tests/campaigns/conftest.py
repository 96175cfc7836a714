"""The WeCom emulator, synced into the test database, for the campaign tests."""

import time
from io import StringIO

import pytest
from django.core.management import call_command

from contacts.facts import facts_refresh
from scrm.wecom.emulator import Config, generate
from tests.wecom import CUSTOMERS, GUIDES, SEED


@pytest.fixture
def emulator(emulator_server, settings):
    """Fresh seeded data (12 guides, 400 customers) synced in full, facts computed, no
    faults and its call counts zeroed; the gateway (and a live server in this process)
    talks to it."""
    emulator, served = emulator_server
    emulator.data = generate(seed=SEED, guides=GUIDES, customers=CUSTOMERS)
    emulator.config = Config()
    emulator.clock = time.time
    emulator.faults.clear()
    emulator.revoke_tokens()
    settings.WECOM_API_BASE = served.base_url
    call_command("sync_wecom", "--full", "--inline", "--json", stdout=StringIO())
    facts_refresh()
    with emulator.lock:  # tests count the calls they make
        emulator.calls.clear()
    return emulator
