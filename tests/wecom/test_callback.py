"""The callback endpoint: verification, signature and replay checks, handling on a worker."""

import time
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.urls import reverse
from wechatpy.enterprise.crypto import WeChatCrypto

from contacts.models import Guide, Relationship, RelationshipEvent
from scrm.models import CallbackEvent
from tests.contacts.factories import GuideFactory, RelationshipFactory
from tests.helpers import wait_for


def _crypto(token: str | None = None) -> WeChatCrypto:
    return WeChatCrypto(
        token or settings.WECOM_CALLBACK_TOKEN,
        settings.WECOM_CALLBACK_AES_KEY,
        settings.WECOM_CORP_ID,
    )


def _event_xml(change_type: str, userid: str, external_userid: str, created: int) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{settings.WECOM_CORP_ID}]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_contact]]></Event>"
        f"<ChangeType><![CDATA[{change_type}]]></ChangeType>"
        f"<UserID><![CDATA[{userid}]]></UserID>"
        f"<ExternalUserID><![CDATA[{external_userid}]]></ExternalUserID></xml>"
    )


def _deliver(client, xml: str, *, token: str | None = None, timestamp: int | None = None):
    """POST as WeCom does: encrypted with the AES key, signed with the Token."""
    import xmltodict

    timestamp = timestamp or int(time.time())
    encrypted = xmltodict.parse(_crypto(token).encrypt_message(xml, "nonce123", timestamp))["xml"]
    query = urlencode(
        {"msg_signature": encrypted["MsgSignature"], "timestamp": timestamp, "nonce": "nonce123"}
    )
    body = (
        f"<xml><ToUserName><![CDATA[{settings.WECOM_CORP_ID}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted['Encrypt']}]]></Encrypt></xml>"
    )
    return client.post(f"{reverse('wecom_callback')}?{query}", body, content_type="text/xml")


@pytest.mark.django_db
def test_url_verification_returns_the_plain_echostr(client):
    import xmltodict

    timestamp = int(time.time())
    encrypted = xmltodict.parse(_crypto().encrypt_message("1616140317555161061", "n1", timestamp))[
        "xml"
    ]
    query = urlencode(
        {
            "msg_signature": encrypted["MsgSignature"],
            "timestamp": timestamp,
            "nonce": "n1",
            "echostr": encrypted["Encrypt"],
        }
    )
    response = client.get(f"{reverse('wecom_callback')}?{query}")
    assert response.status_code == 200
    assert response.content == b"1616140317555161061"
    bad = client.get(
        f"{reverse('wecom_callback')}?{query.replace('msg_signature=', 'msg_signature=0')}"
    )
    assert bad.status_code == 403


@pytest.mark.django_db
def test_event_is_stored_once_and_a_replay_changes_nothing(client):
    xml = _event_xml("edit_external_contact", "guide0001", "wm1", 1700000000)
    assert _deliver(client, xml).status_code == 200
    assert _deliver(client, xml).status_code == 200
    event = CallbackEvent.objects.get()
    assert (event.event, event.change_type) == ("change_external_contact", "edit_external_contact")
    assert event.payload["ExternalUserID"] == "wm1"


@pytest.mark.django_db
def test_bad_signature_is_403_and_writes_nothing(client):
    response = _deliver(client, _event_xml("del_follow_user", "g", "w", 1), token="not-our-token")
    assert response.status_code == 403
    assert not CallbackEvent.objects.exists()


@pytest.mark.django_db
def test_malformed_body_is_400_and_writes_nothing(client):
    query = urlencode({"msg_signature": "x", "timestamp": int(time.time()), "nonce": "n"})
    response = client.post(
        f"{reverse('wecom_callback')}?{query}", b"not xml", content_type="text/xml"
    )
    assert response.status_code == 400
    assert not CallbackEvent.objects.exists()


@pytest.mark.django_db
def test_stale_timestamp_is_refused(client):
    xml = _event_xml("del_follow_user", "g", "w", 1)
    assert _deliver(client, xml, timestamp=int(time.time()) - 3600).status_code == 403
    assert not CallbackEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_customer_deleting_their_guide_becomes_a_churn_alert_on_the_worker(
    client, celery_worker, store
):
    guide = GuideFactory(wecom_userid="guide0007", store=store)
    relationship = RelationshipFactory(guide=guide)
    xml = _event_xml(
        "del_follow_user", "guide0007", relationship.customer.external_userid, int(time.time())
    )
    assert _deliver(client, xml).status_code == 200
    event = CallbackEvent.objects.get()
    wait_for(lambda: CallbackEvent.objects.get(pk=event.pk).status == CallbackEvent.Status.HANDLED)
    relationship.refresh_from_db()
    assert not relationship.is_active and relationship.ended_by == "customer"
    alert = RelationshipEvent.objects.get(relationship=relationship, kind="deleted_by_customer")
    assert alert.source == "callback"
    assert Relationship.objects.get(pk=relationship.pk).customer.is_member is False


@pytest.mark.django_db(transaction=True)
def test_a_user_action_in_the_emulator_reaches_us_and_is_handled(
    emulator, live_server, celery_worker
):
    from io import StringIO

    from django.core.management import call_command

    call_command("sync_wecom", "--inline", "--json", stdout=StringIO())
    emulator.config.callback_url = f"{live_server.url}/wecom/callback/"
    userid = sorted(emulator.data.follows)[0]
    external_userid = emulator.data.follows[userid][0]["external_userid"]

    assert emulator.customer_deletes_guide(external_userid, userid) == 200
    event = CallbackEvent.objects.get(change_type="del_follow_user")
    wait_for(lambda: CallbackEvent.objects.get(pk=event.pk).status == CallbackEvent.Status.HANDLED)
    relationship = Relationship.objects.get(
        customer__external_userid=external_userid, guide__wecom_userid=userid
    )
    assert relationship.ended_by == "customer"

    new_customer = "wmnew0000000000000000000000000001"
    assert emulator.customer_adds_guide(new_customer, userid, state="pkg_card") == 200
    added = CallbackEvent.objects.get(change_type="add_external_contact")
    assert added.payload["State"] == "pkg_card" and added.payload["WelcomeCode"]
    wait_for(lambda: CallbackEvent.objects.get(pk=added.pk).status == CallbackEvent.Status.HANDLED)
    fresh = Relationship.objects.get(customer__external_userid=new_customer)
    assert fresh.state == "pkg_card" and fresh.is_active
    assert fresh.events.filter(kind="added", source="callback").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_guide_deleted_or_disabled_in_wecom_is_signed_out_at_once(
    emulator, live_server, celery_worker, client_for, guide_user, other_guide_user
):
    """Not at the next sync: change_contact delete_user, or update_user of a member now
    disabled (WeCom names the member alone: they are read again). Another member's
    update leaves them signed in."""
    from io import StringIO

    from django.core.management import call_command

    call_command("sync_wecom", "--inline", "--json", stdout=StringIO())
    emulator.config.callback_url = f"{live_server.url}/wecom/callback/"
    leaving, disabled = client_for(guide_user), client_for(other_guide_user)
    for client in (leaving, disabled):
        assert client.get(reverse("guide_customers")).status_code == 200

    assert emulator.member_leaves("guide0001") == 200
    assert emulator.member_disabled("guide0002") == 200
    assert emulator.deliver("change_contact", "update_user", "guide0003") == 200  # a new name
    events = CallbackEvent.objects.filter(event="change_contact")
    wait_for(lambda: list(events.values_list("status", flat=True)) == ["handled"] * 3)
    for client in (leaving, disabled):
        signed_out = client.get(reverse("guide_customers"))
        assert signed_out.status_code == 302 and signed_out["Location"].startswith(reverse("login"))
    assert Guide.objects.get(wecom_userid="guide0003").is_active
    assert set(Guide.objects.filter(is_active=False).values_list("wecom_userid", flat=True)) == {
        "guide0001",
        "guide0002",
    }
