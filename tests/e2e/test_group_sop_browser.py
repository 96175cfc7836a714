"""An operator schedules a group SOP in a real browser (groups, text, a link attachment
with the campaigns' attachment editor, a weekly slot) against the synced emulator, and
reads the 社群 page."""

import re

import pytest
from django.urls import reverse

from campaigns.models import GroupSchedule
from contacts.models import CustomerGroup
from tests.campaigns import conftest as campaign_fixtures
from tests.e2e.test_campaign_browser import _login, _shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

emulator = campaign_fixtures.emulator  # the synced WeCom emulator of tests/campaigns


def test_operator_schedules_a_group_sop_and_reads_the_groups(page, live_server, operator, emulator):
    groups = list(CustomerGroup.objects.order_by("chat_id"))
    assert len(groups) >= 2
    _login(page, live_server, reverse("group_schedule_new"))
    page.fill("#id_name", "周末上新")
    page.select_option("#id_groups", [str(group.pk) for group in groups])
    page.fill("#id_text", "周末上新，群友专享 9 折")
    page.click("button.add-attachment")
    page.select_option(".attachment select.attachment-type", "link")
    page.fill(".attachment input.attachment-title", "新品")
    page.fill(".attachment input.attachment-url", "https://example.com/new")
    page.check("input[name=repeat][value=weekly]")
    page.fill("#id_slot_time", "10:00")
    page.check("input[name=weekdays][value='6']")
    page.check("input[name=weekdays][value='7']")
    _shot(page, "group-sop-edit.png")
    page.click("#schedule-save")
    page.wait_for_url(re.compile(r"/campaigns/group-sop/\d+/$"))
    schedule = GroupSchedule.objects.get()
    assert "群 SOP「周末上新」已保存" in page.locator(".message").inner_text()
    assert (schedule.repeat, schedule.weekdays, schedule.slot_time.strftime("%H:%M")) == (
        "weekly",
        [6, 7],
        "10:00",
    )
    assert schedule.attachments == [
        {"type": "link", "title": "新品", "url": "https://example.com/new"}
    ]
    assert schedule.groups.count() == len(groups)
    assert "每周周六、周日 10:00" in page.locator("dl.facts").inner_text()
    assert page.locator("#nav-group-sop").get_attribute("aria-current") == "page"
    _shot(page, "group-sop-detail.png")

    page.click("#nav-groups")
    page.wait_for_url(re.compile(r"/campaigns/groups/"))
    rows = page.locator("#groups tbody tr")
    assert rows.count() == len(groups)
    first = page.locator(f'#groups tr[data-chat="{groups[0].chat_id}"] td.num').all_inner_texts()
    assert first[0] == str(groups[0].members.count())
    _shot(page, "groups.png")
