"""The demo gives its guides tasks at any hour: the demo brand keeps no quiet hours and
the plan that gives today's tasks runs the whole day."""

import pytest
from django.core.management import call_command

from contacts.models import Guide
from sop.models import ContactPolicy, SopPlan, Touchpoint
from tests.contacts.factories import RelationshipFactory
from tests.sop.windows import room_in_the_day

pytestmark = pytest.mark.django_db


def test_the_demo_guides_have_tasks_whatever_the_hour(guide_user, capsys):
    guide = Guide.objects.get(wecom_userid="guide0001")
    customers = [RelationshipFactory(guide=guide).customer for _ in range(3)]
    room_in_the_day()  # the plan's window ends at 23:59
    call_command("seed_demo_sop")
    plan = SopPlan.objects.get(name="秋冬上新")
    tasks = Touchpoint.objects.filter(plan=plan, status=Touchpoint.Status.TASK, guide=guide)
    assert sorted(tasks.values_list("customer_id", flat=True)) == sorted(c.pk for c in customers)
    policy = ContactPolicy.current()
    assert policy.quiet_start == policy.quiet_end
    call_command("seed_demo_sop")  # again: nobody enrolled twice
    assert tasks.count() == len(customers)
    assert "demo SOP: 6 plans" in capsys.readouterr().out
