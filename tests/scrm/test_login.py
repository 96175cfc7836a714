import pytest
from django.urls import reverse

from scrm.auth import LOGIN_FAILURES
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_login_and_logout(client, operator):
    page = client.get(reverse("login"))
    assert "登录" in page.content.decode()
    response = client.post(reverse("login"), {"username": "operator", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 200
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("home")).status_code == 302


def test_wrong_password_is_refused(client, operator):
    response = client.post(reverse("login"), {"username": "operator", "password": "wrong"})
    assert response.status_code == 200
    assert "用户名或密码不正确" in response.content.decode()
    assert client.get(reverse("home")).status_code == 302


def test_english_is_available(client, operator):
    client.force_login(operator)
    english = client.get(reverse("home"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    chinese = client.get(reverse("home"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert ">Customers<" in english and ">客户<" not in english
    assert ">客户<" in chinese


def test_a_username_that_failed_ten_times_in_an_hour_signs_in_nowhere(client, admin_user):
    """The login page, the admin's and the API token count failures together by
    username (in any case); the tenth locks the name, the right password included."""

    def sign_in(way: str, name: str, password: str):
        return client.post(reverse(way), {"username": name, "password": password})

    ways = ("login", "admin:login", "api-token")
    assert sign_in("admin:login", "admin", PASSWORD).status_code == 302  # it works
    client.logout()
    for attempt in range(LOGIN_FAILURES.per_hour):
        refused = sign_in(ways[attempt % 3], "Admin" if attempt % 2 else "admin", "wrong")
        assert refused.status_code in (200, 400)  # the form again; the API's 400
        assert "_auth_user_id" not in client.session
    page = sign_in("login", "admin", PASSWORD)
    assert page.status_code == 200 and "_auth_user_id" not in client.session
    assert "这个用户名一小时内登录失败已有 10 次" in page.content.decode()
    assert sign_in("admin:login", "admin", PASSWORD).status_code == 200
    assert "_auth_user_id" not in client.session
    token = sign_in("api-token", "admin", PASSWORD)
    assert token.status_code == 429 and "分钟后可以再试" in token.json()["detail"]
    assert int(token["Retry-After"]) > 3000
    # Another username is not held back by it.
    other = sign_in("login", "manager", "wrong")
    assert "用户名或密码不正确" in other.content.decode()
