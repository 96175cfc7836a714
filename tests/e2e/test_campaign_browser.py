"""An operator runs a campaign in a real browser, against the WeCom emulator and the real
worker: creates a channel code (its QR image on its page), builds a campaign's segment
with tagging's condition builder (live count), computes the reach, sends it now, and
after a guide confirms in WeCom refreshes the results."""

import re

import pytest
from django.urls import reverse

from campaigns.models import Campaign, CampaignMessage, CampaignRecipient, ChannelCode
from contacts.facts import facts_refresh_pending
from contacts.models import Guide, Relationship
from tests.campaigns import conftest as campaign_fixtures
from tests.conftest import PASSWORD
from tests.e2e.conftest import SCREENSHOTS
from tests.helpers import wait_for, worker_idle

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

emulator = campaign_fixtures.emulator  # the synced WeCom emulator of tests/campaigns


def _login(page, live_server, next_path: str) -> None:
    page.goto(f"{live_server.url}/login/?next={next_path}")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}{next_path}")


def _shot(page, name: str) -> None:
    """A full-page screenshot. Chromium resizes the viewport for it and, at the next mouse
    press, scrolls the focused field back into view, which moves the button being clicked
    away from under the pointer: nothing is left focused."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.screenshot(path=SCREENSHOTS / name, full_page=True)


def test_operator_creates_a_code_and_sends_a_campaign(
    page, live_server, operator, emulator, celery_worker
):
    # WECOM_API_BASE is the emulator's (the emulator fixture): the live server runs in this
    # process, the worker was started with it.
    guides = list(Guide.objects.order_by("wecom_userid")[:2])

    # -- a channel code ------------------------------------------------------------------
    _login(page, live_server, "/campaigns/codes/new/")
    page.fill("#id_name", "双11包裹卡")
    page.select_option("#id_source", "parcel_card")
    assert page.locator("#id_guides").is_visible() and not page.locator("#id_store").is_visible()
    page.select_option("#id_guides", [str(guide.pk) for guide in guides])
    welcome = page.locator("#id_welcome_text")
    welcome.fill("")
    page.click("button.variable[data-insert='{称呼}']")
    welcome.press("End")
    welcome.type("您好，我是")
    page.click("button.variable[data-insert='{导购姓名}']")
    welcome.press("End")
    welcome.type("，感谢购买！")
    page.click("button.add-attachment")
    page.select_option(".attachment select.attachment-type", "link")
    page.fill(".attachment input.attachment-title", "会员中心")
    page.fill(".attachment input.attachment-url", "https://example.com/m")
    page.fill("#id_cost", "300")
    _shot(page, "campaign-code-edit.png")
    page.click("#code-save")
    page.wait_for_url(re.compile(r"/campaigns/codes/\d+/$"))
    code = ChannelCode.objects.get()
    assert "活码「双11包裹卡」已保存" in page.locator(".message").inner_text()
    assert code.welcome_text == "{称呼}您好，我是{导购姓名}，感谢购买！"
    assert code.welcome_attachments == [
        {"type": "link", "title": "会员中心", "url": "https://example.com/m"}
    ]
    assert emulator.data.contact_ways[code.config_id]["user"] == ["guide0001", "guide0002"]
    # two customers scan it: welcomed through the callback on the worker, counted as adds
    emulator.config.callback_url = f"{live_server.url}/wecom/callback/"
    for _ in range(2):
        assert emulator.customer_scans_contact_way(code.config_id) == 200
    wait_for(lambda: code.welcomes.filter(status="sent").count() == 2, timeout=30)
    wait_for(lambda: Relationship.objects.filter(state=code.state).count() == 2, timeout=30)
    page.reload()
    assert page.locator("[data-stat=adds]").inner_text() == "2"
    assert page.locator("#welcomes tbody tr").count() == 2
    page.wait_for_function("document.getElementById('qr-image').naturalWidth > 0")
    assert page.locator("#qr-download").get_attribute("href").endswith("qr.png?download=1")
    if page.locator("#adds-chart-box").count():
        page.wait_for_selector("#adds-chart-box[data-drawn=true]")
        page.wait_for_timeout(1500)  # ECharts' drawing animation
    _shot(page, "campaign-code-detail.png")

    # -- a campaign: segment, reach, send --------------------------------------------------
    # The two new members' facts wait for the worker's debounced refresh; until it runs the
    # segment does not count them, and the reach would change between computing it and
    # sending. Refresh them now, as that task does.
    facts_refresh_pending()
    page.goto(f"{live_server.url}/campaigns/new/")
    status = page.locator("#preview-status")
    assert "添加至少一个条件" in status.inner_text()
    page.fill("#id_name", "秋冬上新")
    page.click("#builder .grouphead .add-condition")
    leaf = page.locator("#builder .leaf").nth(0)
    leaf.locator("select.fact").select_option("guide")
    leaf.locator("input.value").fill("guide0001, guide0002")
    page.wait_for_function(
        "/匹配 \\d+ 位客户/.test(document.getElementById('preview-status').textContent)"
    )
    page.fill("#id_text", "秋冬家居服上新了，会员专享 8 折")
    page.fill("#id_text_b", "秋冬新品到店，点击查看")
    page.fill("#id_holdout_percent", "10")
    page.click("#campaign-prepare")
    page.wait_for_url(re.compile(r"/campaigns/\d+/edit/#reach$"))
    campaign = Campaign.objects.get(name="秋冬上新")
    reach = int(page.locator("[data-reach=reach]").inner_text().replace(",", ""))
    holdout = int(page.locator("[data-reach=holdout]").inner_text().replace(",", ""))
    assert reach > 0 and holdout > 0
    assert page.locator("#reach-guides tbody tr").count() >= 2
    # the builder shows the saved segment again
    assert page.locator("#builder .leaf select.fact").input_value() == "guide"
    _shot(page, "campaign-edit-reach.png")

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#campaign-send")
    page.wait_for_url(f"{live_server.url}{reverse('campaign_detail', args=[campaign.pk])}")
    assert "已开始发送" in page.locator(".message").inner_text()
    wait_for(lambda: Campaign.objects.get(pk=campaign.pk).status == "sent", timeout=60)
    assert CampaignRecipient.objects.filter(campaign=campaign, status="queued").count() == reach

    # -- a guide confirms in WeCom; the operator refreshes ---------------------------------
    first = CampaignMessage.objects.filter(campaign=campaign).order_by("guide__wecom_userid")[0]
    userid = first.guide.wecom_userid
    tasks = CampaignMessage.objects.filter(campaign=campaign, guide=first.guide)  # A and B
    for message in tasks:
        emulator.guide_confirms_send(message.msgid, userid)
    page.goto(f"{live_server.url}{reverse('campaign_detail', args=[campaign.pk])}")
    assert page.locator("#funnel [data-step=received] strong").inner_text() == "0"
    page.click("#campaign-refresh")
    page.wait_for_url(f"{live_server.url}{reverse('campaign_detail', args=[campaign.pk])}")
    assert "位客户新收到" in page.locator(".message").inner_text()
    received = CampaignRecipient.objects.filter(campaign=campaign, status="sent")
    assert set(received.values_list("guide__wecom_userid", flat=True)) == {userid}
    received = received.count()
    assert 0 < received <= sum(message.recipients for message in tasks)
    assert page.locator("#funnel [data-step=received] strong").inner_text() == f"{received:,}"
    row = page.locator(f"#guides tr[data-guide={userid}]")
    assert "已发送" in row.inner_text()
    _shot(page, "campaign-detail.png")

    page.goto(f"{live_server.url}/campaigns/")
    assert page.locator(f"#campaigns tr[data-campaign='{campaign.pk}']").count() == 1
    assert "双11包裹卡" in page.locator("#codes").inner_text()
    _shot(page, "campaigns-list.png")
    # The sync and the scans left work on the worker (facts, retags, tag pushes): let it
    # finish before the database is emptied for the next test.
    wait_for(lambda: worker_idle() and worker_idle(), timeout=90, interval=0.5)
