import time

import pytest

from scrm.wecom.emulator import Config, generate
from tests.wecom import CUSTOMERS, GUIDES, SEED


@pytest.fixture
def emulator(emulator_server, settings):
    """The session's emulator, reset to its seeded data, with the settings pointed at it."""
    emulator, served = emulator_server
    emulator.data = generate(seed=SEED, guides=GUIDES, customers=CUSTOMERS)
    emulator.config = Config()
    emulator.clock = time.time
    emulator.faults.clear()
    emulator.revoke_tokens()
    with emulator.lock:
        emulator.calls.clear()
        emulator.per_second.clear()
    settings.WECOM_API_BASE = served.base_url
    return emulator
