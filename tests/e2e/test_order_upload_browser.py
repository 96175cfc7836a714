"""Uploading order files in a real browser: one import however often it is sent, the
report opened when the worker is done, and a session that ended said so (not left at
"100%")."""

from pathlib import Path

import pytest

from contacts.models import OrderImport
from tests.e2e.conftest import SCREENSHOTS
from tests.e2e.test_login_browser import _login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

YOUZAN = Path(__file__).resolve().parents[1] / "data" / "orders" / "youzan_orders.csv"
SUBMIT_TWICE = "() => { const form = document.getElementById('upload-form');"
SUBMIT_TWICE += " form.requestSubmit(); form.requestSubmit(); }"


def test_an_upload_sent_twice_is_one_import_and_its_report_opens(
    page, live_server, operator, celery_worker
):
    _login(page, live_server, "operator")
    page.goto(f"{live_server.url}/orders/imports/")
    page.set_input_files("#upload-form input[type=file]", YOUZAN)
    page.evaluate(SUBMIT_TWICE)
    page.wait_for_url(f"{live_server.url}/orders/imports/*/", timeout=30_000)
    record = OrderImport.objects.get()
    assert page.url.endswith(f"/imports/{record.pk}/")
    assert record.status == OrderImport.Status.SUCCEEDED and record.inserted > 0
    page.screenshot(path=SCREENSHOTS / "import-report.png")


def test_an_upload_after_the_session_ended_says_so(page, live_server, operator):
    _login(page, live_server, "operator")
    page.goto(f"{live_server.url}/orders/imports/")
    page.context.clear_cookies(name="sessionid")  # signed out elsewhere, or it expired
    page.set_input_files("#upload-form input[type=file]", YOUZAN)
    page.click("#upload-form button[type=submit]")
    message = page.locator("#upload-text")
    message.filter(has_text="登录已过期").wait_for(timeout=10_000)
    assert page.locator("#upload-form button[type=submit]").is_enabled()
    page.screenshot(path=SCREENSHOTS / "import-upload-signed-out.png")
    page.context.clear_cookies()  # the CSRF cookie too: a page the server no longer takes
    page.click("#upload-form button[type=submit]")
    message.filter(has_text="页面已过期").wait_for(timeout=10_000)
    assert not OrderImport.objects.exists()
