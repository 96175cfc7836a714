"""The admin's WeCom setup page: secrets stored encrypted and masked, each checked live."""

import pytest
from django.urls import reverse

from scrm.models import WeComSetup
from scrm.wecom import credentials

pytestmark = pytest.mark.django_db(transaction=True)

FORM = {
    "action": "save",
    "corp_id": "ww5f1e2d3c4b5a6978",
    "agent_id": "1000002",
    "contact_secret": "dev-contact-secret-0123456789abcdef",
    "agent_secret": "dev-agent-secret-0123456789abcdef",
    "callback_token": "DevCallbackToken2026",
    "callback_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
}


def test_only_admins_open_it_and_nothing_is_saved_by_others(client, operator, manager, guide_user):
    for user in (operator, manager, guide_user):
        client.force_login(user)
        landing = client.get(reverse("home"), follow=True).content.decode()
        assert 'id="nav-wecom-setup"' not in landing
        assert client.get(reverse("wecom_setup")).status_code == 403
        assert client.post(reverse("wecom_setup"), FORM).status_code == 403
    assert not WeComSetup.objects.exists()


def test_a_member_of_the_admin_group_connects_the_corp_too(client, roles, emulator):
    from django.contrib.auth.models import User

    admin = User.objects.create_user(username="it-admin", password="x")
    admin.groups.add(roles["admin"])  # not a superuser
    client.force_login(admin)
    assert 'id="nav-wecom-setup"' in client.get(reverse("customers")).content.decode()
    assert client.get(reverse("wecom_setup")).status_code == 200
    assert client.post(reverse("wecom_setup"), FORM).status_code == 302
    assert credentials.current().contact_secret == FORM["contact_secret"]


def test_secrets_are_stored_encrypted_and_shown_masked(client_for, admin_user, emulator):
    client = client_for(admin_user)
    assert client.post(reverse("wecom_setup"), FORM).status_code == 302
    row = WeComSetup.objects.get()
    assert FORM["contact_secret"] not in row.contact_secret  # ciphertext, not the secret
    assert credentials.current().contact_secret == FORM["contact_secret"]
    page = client.get(reverse("wecom_setup")).content.decode()
    assert FORM["contact_secret"] not in page and "••••cdef" in page
    # a blank secret keeps the saved one
    client.post(reverse("wecom_setup"), {**FORM, "contact_secret": ""})
    assert credentials.current().contact_secret == FORM["contact_secret"]


def test_bad_aes_key_is_refused_with_a_reason(client_for, admin_user):
    response = client_for(admin_user).post(
        reverse("wecom_setup"), {**FORM, "callback_aes_key": "short"}
    )
    assert "43 位" in response.content.decode()
    assert not WeComSetup.objects.exists()


def test_checks_pass_against_the_emulator_and_our_callback(
    client_for, admin_user, emulator, live_server, settings
):
    client = client_for(admin_user)
    client.post(reverse("wecom_setup"), FORM)
    response = client.post(
        reverse("wecom_setup"),
        {"action": "check"},
        HTTP_HOST=live_server.url.removeprefix("http://"),
    )
    results = response.context["results"]
    assert [r["ok"] for r in results] == [True, True, True, True], results


def test_a_wrong_secret_names_the_errcode_and_what_to_do(
    client_for, admin_user, emulator, live_server
):
    client = client_for(admin_user)
    client.post(reverse("wecom_setup"), {**FORM, "contact_secret": "wrong-secret"})
    response = client.post(
        reverse("wecom_setup"),
        {"action": "check"},
        HTTP_HOST=live_server.url.removeprefix("http://"),
    )
    first = response.context["results"][0]
    assert first["ok"] is False and "errcode 40001" in first["detail"]
    assert "Secret" in first["advice"]
