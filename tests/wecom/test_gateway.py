"""The gateway against the emulator over HTTP: tokens, limits, retries, errors, logging."""

import threading
import time

import pytest

from scrm.wecom.gateway import WeComError, WeComGateway

# The gateway reads the setup page's credentials (none saved here: the settings' are used).
pytestmark = pytest.mark.django_db


def test_token_is_shared_between_gateways(emulator):
    WeComGateway.from_settings().follow_user_list()
    WeComGateway.from_settings().follow_user_list()
    assert emulator.stats()["gettoken"] == 1


def test_expired_token_is_refreshed_once_and_the_call_retried(emulator):
    gateway = WeComGateway.from_settings()
    gateway.follow_user_list()
    later = time.time() + 7300
    emulator.clock = lambda: later  # every token has expired: 42001
    assert len(gateway.follow_user_list()) == 12
    stats = emulator.stats()
    assert stats["gettoken"] == 2
    assert stats["externalcontact/get_follow_user_list"] == 3  # ok, 42001, ok


def test_revoked_token_is_refreshed(emulator):
    gateway = WeComGateway.from_settings()
    gateway.follow_user_list()
    emulator.revoke_tokens()  # 40014 for the cached token
    assert len(gateway.follow_user_list()) == 12
    assert emulator.stats()["gettoken"] == 2


def test_concurrent_refreshes_do_not_stampede(emulator):
    WeComGateway.from_settings().follow_user_list()
    emulator.revoke_tokens()
    errors = []

    def call() -> None:
        try:
            WeComGateway.from_settings().follow_user_list()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert emulator.stats()["gettoken"] == 2  # the first token and exactly one refresh


def test_frequency_limit_is_retried_with_backoff(emulator, settings):
    emulator.config.qps_limit = 3
    gateway = WeComGateway.from_settings()
    for _ in range(8):
        assert gateway.department_list()
    assert emulator.stats()["department/list"] > 8  # some were answered 45009 and retried


def test_token_bucket_spaces_calls(emulator, settings):
    settings.WECOM_RATE_PER_SECOND = 20
    gateway = WeComGateway.from_settings()
    started = time.monotonic()
    for _ in range(40):
        gateway.department_list()
    # 20 at once from a full bucket, then 20 more at 20 a second: about one second
    assert time.monotonic() - started >= 0.9


def test_busy_is_retried(emulator):
    gateway = WeComGateway.from_settings()
    gateway.follow_user_list()
    emulator.faults.extend([-1, -1])
    assert gateway.corp_tag_list()
    assert emulator.stats()["externalcontact/get_corp_tag_list"] == 3


def test_other_errors_raise_with_errcode_and_errmsg(emulator):
    with pytest.raises(WeComError) as raised:
        WeComGateway.from_settings().external_contact_get("wm-nobody")
    assert raised.value.errcode == 40096
    assert "invalid external userid" in raised.value.errmsg
    assert raised.value.api == "externalcontact/get"


def test_bad_secret_is_a_clear_error(emulator, settings):
    settings.WECOM_CONTACT_SECRET = "wrong"
    with pytest.raises(WeComError) as raised:
        WeComGateway.from_settings().follow_user_list()
    assert raised.value.errcode == 40001 and raised.value.api == "gettoken"


def test_batch_get_by_user_pages_every_relationship_once(emulator):
    gateway = WeComGateway.from_settings()
    userids = gateway.follow_user_list()
    seen, cursor = [], ""
    while True:
        items, cursor = gateway.batch_get_by_user(userids, cursor=cursor, limit=100)
        assert len(items) <= 100
        seen += [
            (i["follow_info"]["userid"], i["external_contact"]["external_userid"]) for i in items
        ]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == emulator.relations_count()


def test_calls_are_logged_without_the_token(emulator, caplog):
    caplog.set_level("INFO", logger="scrm.wecom.gateway")
    gateway = WeComGateway.from_settings()
    gateway.follow_user_list()
    token = gateway._token()
    assert token
    assert "externalcontact/get_follow_user_list errcode=0" in caplog.text
    assert token not in caplog.text and "dev-contact-secret" not in caplog.text
