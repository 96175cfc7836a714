"""An attachment's address is http or https: a guide's task card or a customer's message
never carries a javascript: or data: link (SOP steps, campaigns, welcomes, group SOP)."""

import pytest
from django import forms

from campaigns.forms import attachments_clean as campaign_attachments
from sop.forms import attachments_clean as step_attachments

BAD = ["javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,<b>x</b>", "example.com/x"]
GOOD = ["https://example.com/care", "http://shop.example.cn/a.png?x=1"]


@pytest.mark.parametrize("address", BAD)
@pytest.mark.parametrize("key", ["url", "pic_url"])
def test_an_address_that_is_not_a_web_address_is_refused(address, key):
    item = {"type": "link", "title": "洗护指南", "url": "https://example.com/ok", key: address}
    with pytest.raises(forms.ValidationError, match="http:// 或 https://"):
        step_attachments([item], 1)
    with pytest.raises(forms.ValidationError, match="http:// 或 https://"):
        campaign_attachments([item])


@pytest.mark.parametrize("address", GOOD)
def test_web_addresses_are_kept(address):
    item = {"type": "link", "title": "洗护指南", "url": address, "pic_url": address}
    assert step_attachments([item], 1) == [item]
    assert campaign_attachments([item]) == [item]
