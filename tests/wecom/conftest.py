import pytest

from scrm.wecom.emulator import Config, WeComEmulator, generate, serve_in_thread

SEED, GUIDES, CUSTOMERS = 3, 12, 400


@pytest.fixture(scope="session")
def emulator_server():
    emulator = WeComEmulator(generate(seed=SEED, guides=GUIDES, customers=CUSTOMERS), Config())
    served = serve_in_thread(emulator)
    yield emulator, served
    served.stop()


@pytest.fixture
def emulator(emulator_server, settings):
    """The session's emulator, reset to its seeded data, with the settings pointed at it."""
    emulator, served = emulator_server
    emulator.data = generate(seed=SEED, guides=GUIDES, customers=CUSTOMERS)
    emulator.config = Config()
    emulator.clock = __import__("time").time
    emulator.faults.clear()
    emulator.revoke_tokens()
    with emulator.lock:
        emulator.calls.clear()
        emulator.per_second.clear()
    settings.WECOM_API_BASE = served.base_url
    return emulator
