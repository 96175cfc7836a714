"""Who may open what: every console page and API endpoint checks the role."""

import pytest
from django.urls import reverse

from contacts.models import Store

CONSOLE_PAGES = ["home", "customers", "tags", "sop", "campaigns", "dashboards", "reports", "sync"]
# Console pages outside the main navigation: also closed to guides.
MORE_CONSOLE_PAGES = [
    "import_list",
    "unmatched_orders",
    "merge_list",
    "products",
    "group_schedules",
    "group_schedule_new",
]
CONSOLE_APIS = ["store-list", "guide-list"]
# Open to console viewers and guides; a guide sees only their own (tests/campaigns).
SCOPED_PAGES = ["customer_groups", "customer_groups_export"]
SCOPED_APIS = ["customer-group-stats"]

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", CONSOLE_PAGES + ["guide_home"])
def test_anonymous_is_sent_to_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", CONSOLE_PAGES[1:] + MORE_CONSOLE_PAGES)
def test_guide_cannot_open_operator_pages(client_for, guide_user, name):
    response = client_for(guide_user).get(reverse(name))
    assert response.status_code == 403


def test_guide_lands_on_their_task_page(client_for, guide_user):
    client = client_for(guide_user)
    assert client.get(reverse("home")).headers["Location"] == reverse("guide_home")
    page = client.get(reverse("guide_home"))
    assert page.status_code == 200
    # A guide's page carries no console navigation, only their own customers.
    body = page.content.decode()
    assert 'class="mainnav"' not in body
    assert f'href="{reverse("customers")}"' not in body
    assert f'href="{reverse("guide_customers")}"' in body


def test_guide_cannot_open_admin(client_for, guide_user):
    client = client_for(guide_user)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert client.get("/admin/contacts/store/").status_code == 302


@pytest.mark.parametrize("name", CONSOLE_APIS)
def test_guide_cannot_read_console_api(client_for, guide_user, name):
    assert client_for(guide_user).get(reverse(name)).status_code == 403


def test_guide_cannot_write_console_api(client_for, guide_user):
    response = client_for(guide_user).post(
        reverse("store-list"), {"code": "X1", "name": "X"}, content_type="application/json"
    )
    assert response.status_code == 403
    assert not Store.objects.filter(code="X1").exists()


@pytest.mark.parametrize("name", MORE_CONSOLE_PAGES)
def test_operator_and_manager_open_order_pages(client, operator, manager, name):
    for user in (operator, manager):
        client.force_login(user)
        assert client.get(reverse(name)).status_code == 200


def test_guide_cannot_start_a_sync_or_upload(client_for, guide_user):
    from contacts.models import OrderImport, SyncRun

    client = client_for(guide_user)
    assert client.post(reverse("sync_now")).status_code == 403
    assert client.post(reverse("import_upload")).status_code == 403
    assert client.post(reverse("syncrun-list")).status_code == 403
    assert not SyncRun.objects.exists() and not OrderImport.objects.exists()


def test_operators_get_no_guide_page(client_for, operator):
    assert client_for(operator).get(reverse("guide_home")).status_code == 403


@pytest.mark.parametrize("name", CONSOLE_PAGES)
def test_operator_and_manager_open_console_pages(client, operator, manager, name):
    for user in (operator, manager):
        client.force_login(user)
        response = client.get(reverse(name))
        assert response.status_code == 200, (user.username, name)
        for nav_name in CONSOLE_PAGES[1:]:
            assert reverse(nav_name) in response.content.decode()


def test_every_console_page_is_built(client_for, operator):
    """No placeholder is left in the navigation (each app's own tests check its pages;
    活动's are tests/campaigns/test_pages.py)."""
    client = client_for(operator)
    for name in CONSOLE_PAGES:
        assert "此页面尚未建成" not in client.get(reverse(name)).content.decode(), name


def test_manager_reads_but_cannot_write_api(client_for, manager, store):
    client = client_for(manager)
    listing = client.get(reverse("store-list")).json()
    assert [row["code"] for row in listing["results"]] == ["SH001"]
    response = client.post(
        reverse("store-list"), {"code": "X2", "name": "X"}, content_type="application/json"
    )
    assert response.status_code == 403
    assert not Store.objects.filter(code="X2").exists()


def test_operator_writes_api(client_for, operator):
    response = client_for(operator).post(
        reverse("store-list"),
        {"code": "HZ001", "name": "杭州湖滨店", "city": "杭州"},
        content_type="application/json",
    )
    assert response.status_code == 201
    assert Store.objects.get(code="HZ001").name == "杭州湖滨店"


def test_user_without_role_gets_nothing(client, db):
    from django.contrib.auth.models import User

    user = User.objects.create_user("nobody", password="x-y-z-12345")
    client.force_login(user)
    assert client.get(reverse("home")).status_code == 403
    assert client.get(reverse("customers")).status_code == 403
    assert client.get(reverse("store-list")).status_code == 403


def test_admin_opens_django_admin(client_for, admin_user):
    client = client_for(admin_user)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/contacts/guide/").status_code == 200


@pytest.mark.parametrize("name", SCOPED_PAGES)
def test_scoped_pages_need_a_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", SCOPED_APIS)
def test_scoped_apis_need_a_login(client, name):
    assert client.get(reverse(name)).status_code in (401, 403)


@pytest.mark.parametrize("name", SCOPED_PAGES + SCOPED_APIS)
def test_scoped_pages_open_to_console_and_guides_not_to_others(
    client, operator, manager, guide_user, name
):
    from django.contrib.auth.models import User

    for user in (operator, manager, guide_user):
        client.force_login(user)
        assert client.get(reverse(name)).status_code == 200, (user.username, name)
    client.force_login(User.objects.create_user("nobody", password="x-y-z-12345"))
    assert client.get(reverse(name)).status_code == 403


def test_the_api_lists_no_one_elses_customers_or_guides(client_for, guide_user, other_guide_user):
    """The filter forms of a guide's APIs take ids: a choice of every customer, guide or
    plan would show the guide other guides' customers, and tell which ids exist."""
    from contacts.models import Guide
    from sop.models import SopPlan
    from tests.contacts.factories import CustomerFactory, OrderFactory, RelationshipFactory

    mine, theirs = Guide.objects.get(user=guide_user), Guide.objects.get(user=other_guide_user)
    own = RelationshipFactory(guide=mine, customer=CustomerFactory(name="我的客户甲")).customer
    other = RelationshipFactory(guide=theirs, customer=CustomerFactory(name="别人的客户乙"))
    OrderFactory(customer=own)
    OrderFactory(customer=other.customer)
    SopPlan.objects.create(
        name="别人的计划丙", trigger=SopPlan.Trigger.MANUAL, started_at="2026-01-01T00:00Z"
    )
    client = client_for(guide_user)
    # No browsable pages at all (a POST form listed every customer): JSON, asked for HTML.
    for name in ("order-list", "order-bind", "sop-touchpoint-list"):
        assert client.get(reverse(name), {"format": "api"}).status_code == 404
        page = client.get(reverse(name), HTTP_ACCEPT="text/html")
        assert page["Content-Type"] == "application/json", name
        text = page.content.decode()
        for hidden in ("别人的客户乙", "别人的计划丙", theirs.name, theirs.wecom_userid):
            assert hidden not in text, (name, hidden)

    def orders(**query) -> list[int]:
        response = client.get(reverse("order-list"), query)
        assert response.status_code == 200
        return [row["customer"] for row in response.json()["results"]]

    assert orders(customer=own.pk) == [own.pk]
    assert orders(customer=other.customer_id) == []
    assert orders(customer=other.customer_id + 1000) == []  # the same answer: no oracle
