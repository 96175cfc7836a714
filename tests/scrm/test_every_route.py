"""Every route of the platform, asked for by a guide: a guide opens and changes
nothing but their own app and what it scopes to them. A new page or endpoint is
covered the day it is added."""

import pytest
from django.urls import URLResolver, get_resolver, reverse

pytestmark = pytest.mark.django_db

# Anyone may reach these (signing in and out, the language, health, WeCom's callback,
# the API's schema and its token exchange); the callback and token check their own.
PUBLIC = {
    "login",
    "logout",
    "set_language",
    "healthz",
    "wecom_callback",
    "api-schema",
    "api-docs",
    "api-token",
    "api-root",
    "guide_oauth",
    "guide_oauth_callback",
}
# A guide's own app, and console pages that scope what they show to the guide (their
# own customers, groups and tasks: tests/sop, tests/contacts, tests/campaigns).
GUIDE_APP = {
    "home",
    "guide_home",
    "guide_customers",
    "guide_customer_detail",
    "guide_sidebar",
    "guide_sidebar_bind",
    "guide_task_action",
    "customer_tags",
    "customer-tags-api",
    "customer-list",
    "customer-detail",
    "order-list",
    "order-detail",
    "order-bind",
    "customer_groups",
    "customer_groups_export",
    "customer-group-stats",
    "sop-touchpoint-list",
    "sop-touchpoint-detail",
}

ARGUMENTS = {
    "week": "2026-W01",
    "action": "done",
    "format": "json",
    "slug": "cohorts",
    "table": "table",
    "file_format": "csv",
}


def _routes(patterns=None):
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            if pattern.app_name != "admin":
                yield from _routes(pattern.url_patterns)
        elif pattern.name:
            regex = getattr(pattern.pattern, "regex", None)
            names = set(pattern.pattern.converters) | set(regex.groupindex if regex else ())
            yield pattern.name, names - {"format"}


def _urls() -> dict[str, str]:
    urls = {}
    for name, arguments in _routes():
        if name not in urls:
            urls[name] = reverse(name, kwargs={a: ARGUMENTS.get(a, 1) for a in arguments})
    return urls


URLS = _urls()


def test_the_walk_finds_the_whole_platform():
    assert len(URLS) > 120
    assert {"customers", "import_rejected_rows", "report_xlsx", "campaign-send"} <= set(URLS)


@pytest.mark.parametrize("name", sorted(set(URLS) - PUBLIC - GUIDE_APP))
def test_a_guide_opens_and_changes_nothing_of_the_console(client_for, guide_user, name):
    client = client_for(guide_user)
    assert client.get(URLS[name]).status_code in (403, 405), name
    assert client.post(URLS[name]).status_code in (403, 405), name
