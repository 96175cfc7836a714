import pytest
from django.urls import reverse

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_schema_lists_the_api(client_for, operator):
    response = client_for(operator).get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/stores/" in paths and "/api/v1/guides/" in paths


def test_docs_load_nothing_from_a_cdn(client_for, operator):
    body = client_for(operator).get("/api/docs/").content.decode()
    assert "swagger-ui" in body
    assert "cdn." not in body and "jsdelivr" not in body


def test_schema_needs_login(client):
    assert client.get("/api/schema/").status_code in (401, 403)


def test_guides_do_not_get_the_api_reference(client_for, guide_user, manager):
    guide = client_for(guide_user)
    assert guide.get("/api/schema/").status_code == 403
    assert guide.get("/api/docs/").status_code == 403
    assert client_for(manager).get("/api/docs/").status_code == 200


def test_token_auth(client, operator, store):
    token = client.post(
        reverse("api-token"), {"username": "operator", "password": PASSWORD}
    ).json()["token"]
    for path in ("/api/v1/auth/token", "/api/v1/auth/token/"):  # no redirect, which drops a POST
        again = client.post(path, {"username": "operator", "password": PASSWORD})
        assert again.status_code == 200 and again.json()["token"] == token, path
    client.logout()
    response = client.get(reverse("store-list"), HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
    assert response.json()["count"] == 1
    anonymous = client.get(reverse("store-list"))
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Token"
    bad_token = client.get(reverse("store-list"), HTTP_AUTHORIZATION="Token wrong")
    assert bad_token.status_code == 401


def test_a_record_not_found_is_said_in_the_readers_language(client_for, operator):
    client = client_for(operator)
    for path in ("/api/v1/customers/999999/", "/api/v1/orders/999999/"):
        chinese = client.get(path)
        assert (chinese.status_code, chinese.json()) == (404, {"detail": "未找到。"}), path
        english = client.get(path, HTTP_ACCEPT_LANGUAGE="en").json()
        assert english == {"detail": "Not found."}


def test_a_nul_in_a_search_or_filter_is_refused_not_a_server_error(
    client_for, operator, guide_user
):
    """Postgres holds no NUL in text: a query string with one gets 400 (JSON for the API),
    and a search sent in a body finds nothing rather than failing."""
    from tests.contacts.factories import CustomerFactory, RelationshipFactory

    RelationshipFactory(customer=CustomerFactory(name="王芳"))  # one who would be found
    console = client_for(operator)
    for path in ("/customers/?q=a%00b", "/sop/touches/?reason=%00", "/customers/?%00=x"):
        answer = console.get(path)
        assert answer.status_code == 400 and "空字符" in answer.content.decode(), path
    api = console.get("/api/v1/customers/?q=%00")
    assert api.status_code == 400 and "空字符" in api.json()["detail"]
    guide = client_for(guide_user)
    for path in ("/guide/customers/?q=a%00b", "/guide/sidebar/?external_userid=%00"):
        assert guide.get(path).status_code == 400, path
    preview = client_for(operator).post(
        reverse("sop_script_preview"), {"scripts": ["x"], "q": "\u0000"},
        content_type="application/json",
    )  # fmt: skip
    assert preview.status_code == 400 and "没有找到匹配" in preview.json()["error"]
