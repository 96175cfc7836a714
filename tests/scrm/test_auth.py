"""A guide who has left (WeCom no longer lists them as working here) has no access:
no sign-in, no session, no API token, no WeCom sign-in; it comes back if WeCom lists
them again."""

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token

from contacts.models import Guide
from tests.conftest import PASSWORD
from tests.contacts.factories import RelationshipFactory

pytestmark = pytest.mark.django_db


def _left(user, left: bool = True) -> None:
    Guide.objects.filter(user=user).update(is_active=not left)


def test_a_guide_who_left_is_signed_out_and_cannot_sign_in(client, guide_user):
    RelationshipFactory(guide=Guide.objects.get(user=guide_user))
    client.force_login(guide_user)
    assert client.get(reverse("guide_customers")).status_code == 200
    _left(guide_user)
    ended = client.get(reverse("guide_customers"))  # the open session ends
    assert ended.status_code == 302 and ended["Location"].startswith(reverse("login"))
    refused = client.post(reverse("login"), {"username": "guide1", "password": PASSWORD})
    assert refused.status_code == 200 and refused.context["form"].non_field_errors()
    assert client.get(reverse("guide_customers")).status_code == 302
    _left(guide_user, left=False)
    back = client.post(reverse("login"), {"username": "guide1", "password": PASSWORD})
    assert back.status_code == 302 and client.get(reverse("guide_customers")).status_code == 200


def test_a_guide_who_left_gets_nothing_with_their_api_token(client, guide_user):
    RelationshipFactory(guide=Guide.objects.get(user=guide_user))
    auth = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=guide_user).key}"}
    assert len(client.get("/api/v1/customers/", **auth).json()["results"]) == 1
    _left(guide_user)
    assert client.get("/api/v1/customers/", **auth).status_code == 403
    assert client.get("/api/v1/orders/", **auth).status_code == 403


def test_colleagues_keep_their_access(client_for, guide_user, other_guide_user, operator):
    _left(guide_user)
    assert client_for(other_guide_user).get(reverse("guide_customers")).status_code == 200
    assert client_for(operator).get(reverse("customers")).status_code == 200
