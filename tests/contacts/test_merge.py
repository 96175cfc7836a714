"""Merging two customer records and undoing it exactly; binding orders to customers."""

import threading
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from contacts import services
from contacts.models import (
    Customer,
    CustomerGroup,
    CustomerGroupMember,
    CustomerIdentity,
    CustomerMerge,
    Guide,
    MergeSuggestion,
    Order,
    OrderBinding,
    Relationship,
)
from sop import triggers
from sop.models import Enrollment, SopPlan, Touchpoint
from tests.contacts.factories import (
    CustomerFactory,
    GuideFactory,
    OrderFactory,
    RelationshipFactory,
)
from tests.helpers import another_waits_for_a_lock, wait_for

pytestmark = pytest.mark.django_db


def _state() -> dict:
    """Everything a merge may touch, as plain values."""
    return {
        "customers": sorted(
            Customer.objects.values_list("pk", "is_member", "joined_at", "merged_into_id")
        ),
        "identities": sorted(CustomerIdentity.objects.values_list("pk", "customer_id")),
        "orders": sorted(Order.objects.values_list("pk", "customer_id")),
        "relationships": sorted(Relationship.objects.values_list("pk", "customer_id")),
        "members": sorted(CustomerGroupMember.objects.values_list("pk", "customer_id")),
        "enrollments": sorted(Enrollment.objects.values_list("pk", "customer_id")),
        "touchpoints": sorted(
            Touchpoint.objects.values_list("pk", "customer_id", "status", "reason")
        ),
    }


@pytest.fixture
def pair(store):
    """A WeCom member and the same person seen only as a buyer, with a shared guide."""
    guide_a, guide_b = GuideFactory(store=store), GuideFactory(store=store)
    keep = RelationshipFactory(guide=guide_a).customer
    absorb = CustomerFactory(external_userid=None, is_member=False, joined_at=None)
    RelationshipFactory(customer=absorb, guide=guide_a)  # same guide: stays with absorb
    moved_relationship = RelationshipFactory(customer=absorb, guide=guide_b)
    first = absorb.relationships.order_by("added_at").values_list("added_at", flat=True)[0]
    Customer.objects.filter(pk=absorb.pk).update(is_member=True, joined_at=first)  # as synced
    CustomerIdentity.objects.create(
        customer=absorb, kind="phone_hash", value="h1", display="138****0001"
    )
    CustomerIdentity.objects.create(customer=absorb, kind="buyer_id", value="tmall:tb_1")
    orders = [OrderFactory(customer=absorb) for _ in range(3)]
    group = CustomerGroup.objects.create(chat_id="wr1", owner_userid=guide_a.wecom_userid)
    member = CustomerGroupMember.objects.create(group=group, userid="x", type=2, customer=absorb)
    return {
        "keep": keep,
        "absorb": absorb,
        "orders": orders,
        "member": member,
        "moved_relationship": moved_relationship,
        "touches": _touches(keep, absorb, guide_a, guide_b, orders[0]),
    }


def _touches(keep, absorb, guide_a, guide_b, order) -> dict:
    """A two-step plan: both records enrolled by the same manual firing with guide_a (the
    first step a task, the second planned), and the absorbed one also by an order, with
    guide_b (the first step done, the second a task)."""
    now = timezone.now()
    plan = SopPlan.objects.create(name="回访", trigger=SopPlan.Trigger.MANUAL, started_at=now)
    steps = [plan.steps.create(position=n) for n in (1, 2)]

    def enrol(customer, guide, key, statuses):
        enrollment = Enrollment.objects.create(
            plan=plan, customer=customer, guide=guide, trigger_key=key, triggered_at=now
        )
        return enrollment, [
            Touchpoint.objects.create(
                enrollment=enrollment,
                step=step,
                plan=plan,
                customer=customer,
                guide=guide,
                due_at=now,
                window_ends_at=now + timedelta(hours=2),
                status=status,
                done_at=now if status == "done" else None,
            )
            for step, status in zip(steps, statuses, strict=True)
        ]

    _, kept = enrol(keep, guide_a, "manual:today", ["task", "planned"])
    same_firing, duplicates = enrol(absorb, guide_a, "manual:today", ["task", "planned"])
    by_order, others = enrol(absorb, guide_b, f"order:{order.pk}", ["done", "task"])
    return {
        "plan": plan,
        "kept": kept,
        "same_firing": same_firing,
        "duplicates": duplicates,
        "by_order": by_order,
        "others": others,
    }


def test_merge_moves_everything_and_undo_restores_exactly(pair, operator):
    before = _state()
    keep, absorb = pair["keep"], pair["absorb"]
    merge = services.customer_merge(keep=keep, absorb=absorb, by=operator)

    assert set(Order.objects.filter(customer=keep).values_list("pk", flat=True)) == {
        o.pk for o in pair["orders"]
    }
    assert set(keep.identities.values_list("kind", flat=True)) == {"phone_hash", "buyer_id"}
    assert Relationship.objects.get(pk=pair["moved_relationship"].pk).customer_id == keep.pk
    assert Relationship.objects.filter(customer=absorb).count() == 1  # the shared guide's
    assert CustomerGroupMember.objects.get(pk=pair["member"].pk).customer_id == keep.pk
    absorb.refresh_from_db()
    assert absorb.merged_into_id == keep.pk
    assert set(merge.moved["orders"]) == {o.pk for o in pair["orders"]}
    # Touchpoints follow the person; the kept customer's own open ones are not doubled.
    touches = pair["touches"]
    moved = {t.pk: (t.customer_id, t.status, t.reason) for t in Touchpoint.objects.all()}
    assert moved == {
        touches["kept"][0].pk: (keep.pk, "task", ""),
        touches["kept"][1].pk: (keep.pk, "planned", ""),
        touches["duplicates"][0].pk: (keep.pk, "stopped", "merged_duplicate"),
        touches["duplicates"][1].pk: (keep.pk, "stopped", "merged_duplicate"),
        touches["others"][0].pk: (keep.pk, "done", ""),
        touches["others"][1].pk: (keep.pk, "task", ""),
    }
    # The enrolment by the order moves (the order did); the same firing stays put, as the
    # kept customer has it already.
    enrolled = dict(Enrollment.objects.values_list("pk", "customer_id"))
    assert enrolled[touches["by_order"].pk] == keep.pk
    assert enrolled[touches["same_firing"].pk] == absorb.pk
    guide_b = pair["moved_relationship"].guide
    assert list(Touchpoint.objects.of_guide(guide_b).filter(status="task")) == [
        touches["others"][1]
    ]

    services.customer_merge_undo(merge=merge, by=operator)
    assert _state() == before
    merge.refresh_from_db()
    assert merge.undone_by == operator


def test_a_merged_customers_tasks_stay_open_and_their_triggers_do_not_fire_again(pair):
    """The facts refresh after a merge neither stops the moved tasks (their guides follow
    the kept customer) nor enrols the kept customer again for the order already enrolled."""
    from contacts.facts import facts_refresh_pending

    keep, touches = pair["keep"], pair["touches"]
    order = pair["orders"][0]
    Order.objects.filter(pk=order.pk).update(paid_at=timezone.now() - timedelta(hours=1))
    SopPlan.objects.filter(pk=touches["plan"].pk).update(
        trigger=SopPlan.Trigger.PAID_ORDER, started_at=timezone.now() - timedelta(days=1)
    )
    services.customer_merge(keep=keep, absorb=pair["absorb"])
    facts_refresh_pending()
    assert triggers.orders_placed(customer_ids=[keep.pk]) == 0
    assert Touchpoint.objects.get(pk=touches["others"][1].pk).status == "task"
    assert Enrollment.objects.filter(customer=keep).count() == 2


def test_undo_twice_is_refused(pair):
    merge = services.customer_merge(keep=pair["keep"], absorb=pair["absorb"])
    services.customer_merge_undo(merge=merge)
    with pytest.raises(ValueError, match="已经撤销"):
        services.customer_merge_undo(merge=merge)


def test_merging_into_itself_or_a_merged_customer_is_refused(pair):
    with pytest.raises(ValueError):
        services.customer_merge(keep=pair["keep"], absorb=pair["keep"])
    services.customer_merge(keep=pair["keep"], absorb=pair["absorb"])
    other = CustomerFactory()
    with pytest.raises(ValueError, match="已被合并"):
        services.customer_merge(keep=other, absorb=pair["absorb"])


def test_merge_and_undo_pages(client_for, operator, pair):
    client = client_for(operator)
    response = client.post(
        reverse("customer_merge", args=[pair["keep"].pk]), {"absorb": pair["absorb"].pk}
    )
    assert response.status_code == 302
    merge = CustomerMerge.objects.get()
    listing = client.get(reverse("merge_list")).content.decode()
    keep, absorb = pair["keep"], pair["absorb"]
    # customers of one name told apart by their numbers, in the list and its undo's question
    assert f">{keep.name} #{keep.pk}<" in listing and f">{absorb.name} #{absorb.pk}<" in listing
    assert f"「{absorb.name} #{absorb.pk}」会带着" in listing
    undone = client.post(reverse("merge_undo", args=[merge.pk]), HTTP_ACCEPT_LANGUAGE="en")
    merge.refresh_from_db()
    assert merge.undone_at is not None
    assert [str(m) for m in get_messages(undone.wsgi_request)] == ["The merge is undone."]


def test_a_record_merged_away_is_no_customer_in_the_lists(client_for, operator, guide_user):
    """Listed and counted, it would be a person twice; read by its id, it says where it
    went. A guide both records had stays on the absorbed one too (`customer_merge`)."""
    guide = Guide.objects.get(wecom_userid="guide0001")
    keep = RelationshipFactory(guide=guide).customer
    absorb = RelationshipFactory(guide=guide, customer__external_userid=None).customer
    services.customer_merge(keep=keep, absorb=absorb, by=operator)
    client = client_for(operator)
    page = client.get(reverse("customers"))
    assert [c.pk for c in page.context["customers"]] == [keep.pk]
    listed = client.get("/api/v1/customers/").json()
    assert (listed["count"], [c["id"] for c in listed["results"]]) == (1, [keep.pk])
    assert client.get(f"/api/v1/customers/{absorb.pk}/").json()["merged_into"] == keep.pk
    guide_page = client_for(guide_user).get(reverse("guide_customers"))
    assert [c.pk for c in guide_page.context["customers"]] == [keep.pk]


@pytest.mark.parametrize("absorb", ["abc", "", "99999999", "²"])
def test_merging_in_a_customer_not_found_says_so(client_for, operator, absorb):
    keep = CustomerFactory()
    response = client_for(operator).post(
        reverse("customer_merge", args=[keep.pk]), {"absorb": absorb}, follow=True
    )
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == [f"找不到要合并的客户 {absorb or '—'}。"]
    assert not CustomerMerge.objects.exists()


def test_the_customer_page_says_its_facts_are_being_made_again_after_a_merge(client_for, operator):
    from contacts.facts import facts_refresh_pending

    keep, absorb = CustomerFactory(), CustomerFactory(external_userid=None)
    OrderFactory(customer=absorb, amount="120.00", refund_amount="0")
    facts_refresh_pending()
    client = client_for(operator)
    page = reverse("customer_detail", args=[keep.pk])
    assert 'id="facts-pending"' not in client.get(page).content.decode()
    services.customer_merge(keep=keep, absorb=absorb, by=operator)
    assert 'id="facts-pending"' in client.get(page).content.decode()
    facts_refresh_pending()  # what the worker does a few seconds later
    after = client.get(page).content.decode()
    assert 'id="facts-pending"' not in after and "¥120.00" in after


def test_manager_and_guide_cannot_merge(client, manager, guide_user, pair):
    for user in (manager, guide_user):
        client.force_login(user)
        response = client.post(
            reverse("customer_merge", args=[pair["keep"].pk]), {"absorb": pair["absorb"].pk}
        )
        assert response.status_code == 403
    assert not CustomerMerge.objects.exists()


def test_guide_binds_an_order_number_to_their_customer(client_for, guide_user, other_guide_user):
    guide = Guide.objects.get(wecom_userid="guide0001")
    customer = RelationshipFactory(guide=guide).customer
    order = OrderFactory(
        customer=None,
        channel_order_id="DY123",
        buyer_phone_hash="hx",
        buyer_phone_masked="138****1",
    )
    client = client_for(guide_user)
    response = client.post(
        reverse("order-bind"),
        {"customer_id": customer.pk, "order_number": "DY123"},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    order.refresh_from_db()
    assert order.customer_id == customer.pk
    assert CustomerIdentity.objects.filter(
        customer=customer, kind="phone_hash", value="hx"
    ).exists()


def test_guide_cannot_bind_to_another_guides_customer(client_for, guide_user, other_guide_user):
    theirs = RelationshipFactory(guide=Guide.objects.get(wecom_userid="guide0002")).customer
    order = OrderFactory(customer=None, channel_order_id="DY999")
    response = client_for(guide_user).post(
        reverse("order-bind"),
        {"customer_id": theirs.pk, "order_number": "DY999"},
        content_type="application/json",
    )
    assert response.status_code == 404
    order.refresh_from_db()
    assert order.customer_id is None


def test_confirming_a_suggestion_links_the_order(operator):
    customer = CustomerFactory()
    order = OrderFactory(customer=None, buyer_phone_masked="138****5601")
    other = CustomerFactory()
    suggestion = MergeSuggestion.objects.create(order=order, customer=customer, reason="r")
    second = MergeSuggestion.objects.create(order=order, customer=other, reason="r")
    services.merge_suggestions_decide(suggestions=[suggestion], confirm=True, by=operator)
    order.refresh_from_db()
    second.refresh_from_db()
    assert order.customer_id == customer.pk
    assert second.status == MergeSuggestion.Status.REJECTED
    with pytest.raises(ValueError):
        services.merge_suggestions_decide(suggestions=[suggestion], confirm=False)


def test_a_buyers_suggestions_are_listed_and_confirmed_together(client_for, operator, manager):
    """A Douyin checkout of two items is two sub-orders: one row, one decision."""
    customer, other = CustomerFactory(name="赵敏"), CustomerFactory(name="钱芳")
    first, second = (
        OrderFactory(customer=None, channel="douyin", buyer_phone_masked="138****5601",
                     buyer_name="赵*", channel_order_id=f"69001{n}")
        for n in (1, 2)
    )  # fmt: skip
    lone = OrderFactory(customer=None, buyer_phone_masked="139****0002", buyer_name="钱*")
    made = [
        MergeSuggestion.objects.create(order=order, customer=suggested, reason="r")
        for order, suggested in ((first, customer), (second, customer), (lone, other))
    ]
    client = client_for(operator)
    page = client.get(reverse("unmatched_orders"))
    groups = [[s.pk for s in group] for group in page.context["suggestion_groups"]]
    assert sorted(map(sorted, groups)) == [sorted([made[0].pk, made[1].pk]), [made[2].pk]]
    body = page.content.decode()
    assert "3 条待确认" in body and "确认 2 笔" in body
    lead, *also = next(group for group in groups if len(group) == 2)
    assert (
        client_for(manager)
        .post(reverse("suggestion_decide", args=[lead]), {"decision": "confirm", "also": also})
        .status_code
        == 403
    )  # managers read, operators decide
    client = client_for(operator)
    done = client.post(
        reverse("suggestion_decide", args=[lead]), {"decision": "confirm", "also": also},
        follow=True,
    )  # fmt: skip
    assert "已确认：2 笔订单归到客户 赵敏" in done.content.decode()
    for order in (first, second):
        order.refresh_from_db()
        assert order.customer_id == customer.pk
    lone.refresh_from_db()
    assert lone.customer_id is None
    # Deciding them again: refused, nothing changes.
    again = client.post(
        reverse("suggestion_decide", args=[lead]), {"decision": "reject", "also": also},
        follow=True,
    )  # fmt: skip
    assert "这条建议已经处理过了" in again.content.decode()
    # Suggestions of two customers are never decided together.
    mixed = client.post(
        reverse("suggestion_decide", args=[made[2].pk]), {"decision": "confirm", "also": [lead]}
    )
    assert mixed.status_code == 400
    assert MergeSuggestion.objects.get(pk=made[2].pk).status == MergeSuggestion.Status.PENDING


def test_a_rejected_buyer_account_becomes_a_customer_of_its_own(client_for, operator):
    """Rejected, the orders of a JD account go to the customer of that account (one new
    customer for both); an order known only by its masked phone and name stays unmatched."""
    suggested = CustomerFactory(name="陈静")
    held = [
        OrderFactory(customer=None, channel="jd", buyer_id="jd_5605", buyer_name="陈静",
                     buyer_phone_masked="151****5605", channel_order_id=f"JD-{n}")
        for n in (1, 2)
    ]  # fmt: skip
    masked = OrderFactory(customer=None, buyer_phone_masked="151****5605", buyer_name="陈静")
    lead, *also = (
        MergeSuggestion.objects.create(order=order, customer=suggested, reason="r").pk
        for order in (*held, masked)
    )
    done = client_for(operator).post(
        reverse("suggestion_decide", args=[lead]), {"decision": "reject", "also": also},
        follow=True,
    )  # fmt: skip
    assert "已拒绝 3 条建议。订单 JD-1、JD-2 已归到其买家账号自己的客户。" in done.content.decode()
    owners = {Order.objects.get(pk=order.pk).customer for order in held}
    assert len(owners) == 1
    (own,) = owners
    assert own.pk != suggested.pk and own.name == "陈静"
    assert CustomerIdentity.objects.get(kind="buyer_id", value="jd:jd_5605").customer == own
    masked.refresh_from_db()
    assert masked.customer_id is None


def test_a_suggestion_whose_order_was_bound_since_is_not_confirmed(operator):
    """A guide bound the order to someone else meanwhile: confirming would move it."""
    suggested, bound = CustomerFactory(), CustomerFactory()
    order = OrderFactory(customer=None, buyer_phone_masked="138****5601", channel_order_id="T9")
    suggestion = MergeSuggestion.objects.create(order=order, customer=suggested, reason="r")
    services.order_bind(order=order, customer=bound)
    with pytest.raises(ValueError, match="订单 T9 已经属于另一位客户"):
        services.merge_suggestions_decide(suggestions=[suggestion], confirm=True, by=operator)
    order.refresh_from_db()
    suggestion.refresh_from_db()
    assert (order.customer_id, suggestion.status) == (bound.pk, MergeSuggestion.Status.PENDING)
    services.merge_suggestions_decide(suggestions=[suggestion], confirm=False, by=operator)
    assert MergeSuggestion.objects.get(pk=suggestion.pk).status == MergeSuggestion.Status.REJECTED


def test_the_latest_buyers_are_shown_first_and_the_rest_is_counted(
    client_for, operator, monkeypatch
):
    from contacts import order_views

    older, newer = CustomerFactory(), CustomerFactory()
    for customer, masked, name in ((older, "138****0001", "赵*"), (newer, "138****0002", "钱*")):
        for _ in range(2):
            order = OrderFactory(customer=None, buyer_phone_masked=masked, buyer_name=name)
            MergeSuggestion.objects.create(order=order, customer=customer, reason="r")
    monkeypatch.setattr(order_views, "SUGGESTION_GROUPS_SHOWN", 1)
    page = client_for(operator).get(reverse("unmatched_orders"))
    (group,) = page.context["suggestion_groups"]
    assert {s.customer_id for s in group} == {newer.pk} and len(group) == 2
    assert "还有 2 条在处理后显示" in page.content.decode()


def _suggestion_state(customer, order) -> tuple:
    order.refresh_from_db()
    identities = set(customer.identities.values_list("kind", "value", "display"))
    suggestions = set(
        MergeSuggestion.objects.filter(order=order).values_list(
            "pk", "status", "decided_by", "decided_at"
        )
    )
    return order.customer_id, order.unmatched_reason, identities, suggestions


def test_a_confirmation_is_undone_exactly(operator):
    customer, other = CustomerFactory(), CustomerFactory()
    # a key the customer had before stays theirs after the undo; the buyer id is new
    CustomerIdentity.objects.create(customer=customer, kind="unionid", value="oU-1")
    order = OrderFactory(
        customer=None, channel="douyin", buyer_phone_masked="138****5601", buyer_id="dy-7",
        buyer_unionid="oU-1", unmatched_reason="只有打码手机号，无法自动识别买家",
    )  # fmt: skip
    suggestion = MergeSuggestion.objects.create(order=order, customer=customer, reason="r")
    MergeSuggestion.objects.create(order=order, customer=other, reason="r")
    before = _suggestion_state(customer, order)
    services.merge_suggestions_decide(suggestions=[suggestion], confirm=True, by=operator)
    bound = _suggestion_state(customer, order)
    assert bound[0] == customer.pk and ("buyer_id", "douyin:dy-7", "") in bound[2]
    assert {status for _, status, _, _ in bound[3]} == {"confirmed", "rejected"}
    services.merge_suggestions_undo(suggestions=[MergeSuggestion.objects.get(pk=suggestion.pk)])
    assert _suggestion_state(customer, order) == before
    with pytest.raises(ValueError, match="只能撤销已确认或已拒绝的建议"):
        services.merge_suggestions_undo(suggestions=[suggestion])


def test_a_rejection_is_undone_exactly(operator):
    """Rejected, an order known by a masked phone and a name stays unmatched, and one
    whose buyer account is a known customer's goes to them (with the order's other
    keys, its other suggestions rejected): undone, all is as before the decision."""
    suggested, account, other = CustomerFactory(), CustomerFactory(), CustomerFactory()
    CustomerIdentity.objects.create(customer=account, kind="buyer_id", value="jd:jd_77")
    masked = OrderFactory(
        customer=None, buyer_phone_masked="138****5601", buyer_name="赵*", buyer_id="",
        unmatched_reason="只有打码手机号，无法自动识别买家",
    )  # fmt: skip
    held = OrderFactory(
        customer=None, channel="jd", buyer_phone_masked="138****5601", buyer_name="赵*",
        buyer_id="jd_77", buyer_unionid="oU-77", unmatched_reason="打码",
    )  # fmt: skip
    lead, second = (
        MergeSuggestion.objects.create(order=order, customer=suggested, reason="r")
        for order in (masked, held)
    )
    MergeSuggestion.objects.create(order=held, customer=other, reason="r")
    before = [_suggestion_state(c, o) for c, o in ((suggested, masked), (account, held))]
    moved = services.merge_suggestions_decide(
        suggestions=[lead, second], confirm=False, by=operator
    )
    assert [order.pk for order in moved] == [held.pk]
    after = _suggestion_state(account, held)
    assert after[0] == account.pk and ("unionid", "oU-77", "") in after[2]
    assert {status for _, status, _, _ in after[3]} == {"rejected"}  # the other one too
    assert _suggestion_state(suggested, masked)[0] is None
    services.merge_suggestions_undo(suggestions=list(MergeSuggestion.objects.filter(
        pk__in=[lead.pk, second.pk])))  # fmt: skip
    assert [_suggestion_state(c, o) for c, o in ((suggested, masked), (account, held))] == before
    with pytest.raises(ValueError, match="只能撤销已确认或已拒绝的建议"):
        services.merge_suggestions_undo(suggestions=[lead, second])


def test_a_rejection_whose_order_moved_since_or_that_made_a_customer_is_not_undone(operator):
    suggested, bound = CustomerFactory(name="陈静"), CustomerFactory()
    order = OrderFactory(customer=None, buyer_phone_masked="151****5605", channel_order_id="T7")
    suggestion = MergeSuggestion.objects.create(order=order, customer=suggested, reason="r")
    services.merge_suggestions_decide(suggestions=[suggestion], confirm=False, by=operator)
    services.order_bind(order=order, customer=bound)  # a guide, since
    with pytest.raises(ValueError, match="订单 T7 在拒绝之后已归到别处"):
        services.merge_suggestions_undo(suggestions=[suggestion])
    order.refresh_from_db()
    assert order.customer_id == bound.pk
    # Rejected, a buyer account no one has becomes a customer: a merge undoes that.
    account = OrderFactory(customer=None, channel="jd", buyer_id="jd_5605", buyer_name="陈静",
                           buyer_phone_masked="151****5605", channel_order_id="JD-9")  # fmt: skip
    made = MergeSuggestion.objects.create(order=account, customer=suggested, reason="r")
    services.merge_suggestions_decide(suggestions=[made], confirm=False, by=operator)
    account.refresh_from_db()
    own = account.customer
    assert own.pk not in (suggested.pk, bound.pk)
    with pytest.raises(
        ValueError, match=f"新建了客户 #{own.pk}，无法撤销；.*在 {suggested.label} 的页面"
    ):
        services.merge_suggestions_undo(suggestions=[made])
    assert Order.objects.get(pk=account.pk).customer_id == own.pk
    services.customer_merge(keep=suggested, absorb=own, by=operator)
    assert Order.objects.get(pk=account.pk).customer_id == suggested.pk


def test_rejections_are_listed_with_their_undo(client_for, operator, manager):
    suggested = CustomerFactory(name="赵敏")
    masked, moot, account = (
        OrderFactory(customer=None, buyer_phone_masked="138****5601", buyer_name="赵*",
                     buyer_id=buyer_id, channel="jd", channel_order_id=number)
        for buyer_id, number in (("", "R-1"), ("", "R-2"), ("jd_1", "R-3"))
    )  # fmt: skip
    made = {
        order.pk: MergeSuggestion.objects.create(order=order, customer=suggested, reason="r")
        for order in (masked, moot, account)
    }
    services.order_bind(order=moot, customer=CustomerFactory())  # bound before: moot
    client = client_for(operator)
    for order in (masked, moot, account):
        client.post(reverse("suggestion_decide", args=[made[order.pk].pk]), {"decision": "reject"})
    page = client.get(reverse("unmatched_orders"))
    groups = page.context["rejected_groups"]
    listed = [(group[0].order_id, bool(made)) for group, made, _ in groups]
    assert listed == [(account.pk, True), (masked.pk, False)]  # newest first; not the moot one
    body = page.content.decode()
    assert "最近拒绝的建议" in body and f"在 {suggested.label} 的页面把新建的客户并入" in body
    assert "<td>运营小王</td>" in body  # who decided, by name
    undo = reverse("suggestion_undo", args=[made[masked.pk].pk])
    assert client_for(manager).post(undo).status_code == 403
    client = client_for(operator)
    done = client.post(undo, follow=True).content.decode()
    assert "已撤销拒绝：1 条建议重新待确认" in done
    assert MergeSuggestion.objects.get(pk=made[masked.pk].pk).status == "pending"
    refused = client.post(reverse("suggestion_undo", args=[made[account.pk].pk]), follow=True)
    assert "无法撤销" in refused.content.decode()
    assert MergeSuggestion.objects.get(pk=made[account.pk].pk).status == "rejected"
    # the merge it points to, done: the row says so, and where the customer is now
    own = Order.objects.get(pk=account.pk).customer
    services.customer_merge(keep=suggested, absorb=own, by=operator)
    body = client.get(reverse("unmatched_orders")).content.decode()
    assert f"新建的客户 #{own.pk} 已并入" in body and "把新建的客户并入" not in body


def test_a_confirmation_whose_order_moved_since_is_not_undone(operator):
    suggested, bound = CustomerFactory(), CustomerFactory(external_userid=None)
    order = OrderFactory(customer=None, buyer_phone_masked="138****5601", channel_order_id="T8")
    suggestion = MergeSuggestion.objects.create(order=order, customer=suggested, reason="r")
    services.merge_suggestions_decide(suggestions=[suggestion], confirm=True, by=operator)
    merge = services.customer_merge(keep=bound, absorb=suggested, by=operator)
    with pytest.raises(ValueError, match="订单 T8 已经不在这位客户名下"):
        services.merge_suggestions_undo(suggestions=[suggestion])
    order.refresh_from_db()
    assert order.customer_id == bound.pk and merge.pk


def test_a_buyers_confirmation_is_undone_together_on_the_page(client_for, operator, manager):
    customer = CustomerFactory(name="赵敏")
    orders = [
        OrderFactory(customer=None, channel="douyin", buyer_phone_masked="138****5601",
                     buyer_name="赵*", channel_order_id=f"69002{n}", unmatched_reason="打码")
        for n in (1, 2)
    ]  # fmt: skip
    made = [MergeSuggestion.objects.create(order=o, customer=customer, reason="r") for o in orders]
    client = client_for(operator)
    client.post(
        reverse("suggestion_decide", args=[made[0].pk]),
        {"decision": "confirm", "also": [made[1].pk]},
    )
    page = client.get(reverse("unmatched_orders"))
    groups = [[s.pk for s in group] for group in page.context["confirmed_groups"]]
    assert groups == [[made[0].pk, made[1].pk]]
    undo = reverse("suggestion_undo", args=[made[0].pk])
    assert client_for(manager).post(undo, {"also": [made[1].pk]}).status_code == 403
    done = client_for(operator).post(undo, {"also": [made[1].pk]}, follow=True).content.decode()
    assert "已撤销：2 笔订单回到未匹配订单" in done
    for order in orders:
        order.refresh_from_db()
        assert (order.customer_id, order.unmatched_reason) == (None, "打码")
    assert {s.status for s in MergeSuggestion.objects.filter(pk__in=[m.pk for m in made])} == {
        "pending"
    }


def test_a_guides_binding_settles_the_orders_suggestions_and_is_undone_exactly(
    client_for, guide_user, operator
):
    """A guide binds the order a suggestion waits on: the suggestion is settled (not
    left for an operator to confirm into an error), the binding is recorded, and an
    operator's undo puts the order, the identities and the suggestion back."""

    customer = CustomerFactory()
    guide = Guide.objects.get(wecom_userid="guide0001")
    RelationshipFactory(customer=customer, guide=guide)
    order = OrderFactory(
        customer=None,
        buyer_phone_masked="138****5601",
        channel_order_id="T7",
        buyer_id="tb_7",
        unmatched_reason="masked",
    )
    suggestion = MergeSuggestion.objects.create(order=order, customer=customer, reason="r")
    identities_before = set(CustomerIdentity.objects.values_list("customer_id", "kind", "value"))
    bound = client_for(guide_user).post(
        reverse("order-bind"), {"customer_id": customer.pk, "order_number": "T7"}
    )
    assert bound.status_code == 200
    suggestion.refresh_from_db()
    assert (suggestion.status, suggestion.decided_by) == ("rejected", guide_user)
    with pytest.raises(ValueError, match="这条建议已经处理过了"):
        services.merge_suggestions_decide(suggestions=[suggestion], confirm=True, by=operator)
    binding = OrderBinding.objects.get()
    assert (binding.order_id, binding.customer_id, binding.guide) == (order.pk, customer.pk, guide)
    assert CustomerIdentity.objects.get(customer=customer, kind="buyer_id").value == "tmall:tb_7"
    services.order_binding_undo(binding=binding, by=operator)
    order.refresh_from_db()
    suggestion.refresh_from_db()
    binding.refresh_from_db()
    assert (order.customer_id, order.unmatched_reason) == (None, "masked")
    assert (suggestion.status, suggestion.decided_by, suggestion.decided_at) == (
        "pending",
        None,
        None,
    )
    assert binding.undone_by == operator and binding.undone_at is not None
    identities = set(CustomerIdentity.objects.values_list("customer_id", "kind", "value"))
    assert identities == identities_before
    with pytest.raises(ValueError, match="已经撤销"):
        services.order_binding_undo(binding=binding, by=operator)


def test_a_guide_cannot_bind_an_order_whose_buyer_phone_is_not_the_customers(
    client_for, guide_user
):

    from contacts.phones import phone_hash, phone_mask

    guide = Guide.objects.get(wecom_userid="guide0001")
    customer = RelationshipFactory(guide=guide).customer
    CustomerIdentity.objects.create(
        customer=customer,
        kind="phone_hash",
        value=phone_hash("+8613800005601"),
        display=phone_mask("+8613800005601"),
    )
    other_phone = OrderFactory(
        customer=None,
        channel_order_id="T8",
        buyer_phone_hash=phone_hash("+8613900001234"),
        buyer_phone_masked="139****1234",
    )
    other_masked = OrderFactory(
        customer=None, channel_order_id="T9", buyer_phone_masked="132****7378"
    )
    same_masked = OrderFactory(
        customer=None, channel_order_id="T10", buyer_phone_masked="138****5601"
    )
    no_phone = OrderFactory(customer=None, channel_order_id="T11", buyer_id="tb_11")
    client = client_for(guide_user)

    def bind(number: str):
        return client.post(
            reverse("order-bind"), {"customer_id": customer.pk, "order_number": number}
        )

    for refused in (other_phone, other_masked):
        response = bind(refused.channel_order_id)
        # refused as an order not found is: a stranger's phone, even masked, is not told
        assert response.status_code == 404, refused.channel_order_id
        missing = bind("NO-SUCH-ORDER").json()["detail"]
        number = refused.channel_order_id
        assert response.json()["detail"] == missing.replace("NO-SUCH-ORDER", number)
        assert refused.buyer_phone_masked[-4:] not in response.json()["detail"]
        refused.refresh_from_db()
        assert refused.customer_id is None
    for accepted in (same_masked, no_phone):
        assert bind(accepted.channel_order_id).status_code == 200
        accepted.refresh_from_db()
        assert accepted.customer_id == customer.pk
    assert sorted(OrderBinding.objects.values_list("order_id", flat=True)) == sorted(
        [same_masked.pk, no_phone.pk]
    )


def test_a_confirmation_is_undone_whole_and_old_ones_are_not_offered(operator):
    customer = CustomerFactory()
    orders = [OrderFactory(customer=None, buyer_phone_masked="138****5601") for _ in range(2)]
    made = [MergeSuggestion.objects.create(order=o, customer=customer, reason="r") for o in orders]
    services.merge_suggestions_decide(suggestions=made, confirm=True, by=operator)
    with pytest.raises(ValueError, match="一次处理的建议要一起撤销"):
        services.merge_suggestions_undo(suggestions=made[:1])
    # confirmed before undo was kept: not listed, and refused
    MergeSuggestion.objects.filter(pk__in=[m.pk for m in made]).update(undo={})
    from contacts.selectors import decided_suggestion_groups

    assert decided_suggestion_groups(status="confirmed", limit=20) == []
    with pytest.raises(ValueError, match="只能撤销已确认或已拒绝的建议"):
        services.merge_suggestions_undo(suggestions=made)


def test_operators_see_guides_bindings_and_undo_them_managers_only_read(
    client_for, guide_user, operator, manager
):
    from contacts.models import OrderBinding

    guide = Guide.objects.get(wecom_userid="guide0001")
    customer = RelationshipFactory(guide=guide, customer=CustomerFactory(name="绑定客户")).customer
    order = OrderFactory(customer=None, channel_order_id="T77", buyer_name="吴*")
    services.order_bind_by_number(guide=guide, customer=customer, channel_order_id="T77")
    binding = OrderBinding.objects.get()
    undo = reverse("binding_undo", args=[binding.pk])
    read = client_for(manager).get(reverse("merge_list")).content.decode()
    assert "T77" in read and "绑定客户" in read and guide.name in read and undo not in read
    assert client_for(manager).post(undo).status_code == 403
    assert client_for(guide_user).post(undo).status_code == 403
    order.refresh_from_db()
    assert order.customer_id == customer.pk
    page = client_for(operator).get(reverse("merge_list")).content.decode()
    assert undo in page
    assert client_for(operator).post(undo).status_code == 302
    order.refresh_from_db()
    assert order.customer_id is None
    after = client_for(operator).get(reverse("merge_list")).content.decode()
    assert undo not in after and "已于" in after


@pytest.mark.django_db(transaction=True)
def test_a_confirmation_waits_for_a_binding_without_holding_the_suggestion(operator):
    """A guide's binding locks the order, then rejects its suggestions; a confirmation
    of one of them must take the order first too, or each would wait on the other."""
    customer = CustomerFactory()
    order = OrderFactory(customer=None, buyer_phone_masked="138****5601")
    suggestion = MergeSuggestion.objects.create(order=order, customer=customer, reason="r")
    errors = []

    def confirm() -> None:
        try:
            services.merge_suggestions_decide(suggestions=[suggestion], confirm=True, by=operator)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    worker = threading.Thread(target=confirm)
    with transaction.atomic():  # where a binding stands once it has the order
        Order.objects.select_for_update().get(pk=order.pk)
        worker.start()
        wait_for(another_waits_for_a_lock, timeout=5, interval=0.05)
        # The binding can still settle the order's suggestions.
        MergeSuggestion.objects.select_for_update(nowait=True).get(pk=suggestion.pk)
    worker.join()
    assert not errors
    suggestion.refresh_from_db()
    order.refresh_from_db()
    assert (suggestion.status, order.customer_id) == (MergeSuggestion.Status.CONFIRMED, customer.pk)


def test_the_merges_page_pages_through_every_merge_keeping_the_other_lists_page(
    client_for, operator, monkeypatch
):
    from contacts import order_views

    monkeypatch.setattr(order_views, "HISTORY_PER_PAGE", 2)
    made = []
    for n in range(5):
        keep = CustomerFactory(name=f"保留{n}", external_userid=None)
        absorb = CustomerFactory(name=f"并入{n}")
        made.append(services.customer_merge(keep=keep, absorb=absorb).pk)
    client, seen = client_for(operator), []
    for page in (1, 2, 3):
        response = client.get(reverse("merge_list"), {"page": page, "bindings_page": 1})
        seen += [merge.pk for merge in response.context["merges"]]
    assert seen == made[::-1]  # newest first, each once
    html = response.content.decode()
    pager = html.split('id="merges-pager"')[1].split("</p>")[0]
    assert "bindings_page=1&amp;page=2" in pager


def test_the_customer_page_finds_whom_to_merge_in_by_phone_name_or_number(
    client_for, operator, manager
):
    from contacts.phones import phone_hash, phone_mask

    keep = CustomerFactory(name="林小雨")
    buyer = CustomerFactory(name="林小雨", external_userid=None)
    CustomerIdentity.objects.create(
        customer=buyer,
        kind="phone_hash",
        value=phone_hash("+8613800135601"),
        display=phone_mask("+8613800135601"),
    )
    gone = CustomerFactory(name="林小雨", external_userid=None)
    services.customer_merge(keep=CustomerFactory(name="别人"), absorb=gone)
    url = reverse("customer_detail", args=[keep.pk])
    client = client_for(operator)

    def found(text: str) -> list[int]:
        response = client.get(url, {"merge_q": text})
        return [candidate.pk for candidate in response.context["merge_candidates"]]

    # not the customer themself, nor a record merged away already
    assert found("林小雨") == [buyer.pk]
    assert found("13800135601") == [buyer.pk]
    assert found(f"#{buyer.pk}") == [buyer.pk] == found(str(buyer.pk))
    assert found("没有这个人") == []
    page = client.get(url, {"merge_q": "13800135601"}).content.decode()
    assert "138****5601" in page and "13800135601" not in page.split('id="merge-candidates"')[1]
    assert (
        client.post(reverse("customer_merge", args=[keep.pk]), {"absorb": buyer.pk}).status_code
        == 302
    )
    buyer.refresh_from_db()
    assert buyer.merged_into_id == keep.pk
    read_only = client_for(manager).get(url, {"merge_q": "林小雨"}).content.decode()
    assert 'id="customer-merge"' not in read_only


def test_two_wecom_contacts_are_shown_unmergeable_and_a_merge_is_refused(client_for, operator):
    keep, other = CustomerFactory(name="林小雨"), CustomerFactory(name="林小雨")
    client = client_for(operator)
    url = reverse("customer_detail", args=[keep.pk])
    page = client.get(url, {"merge_q": "林小雨"}).content.decode()
    candidates = page.split('id="merge-candidates"')[1]
    assert "两位都是企业微信联系人（两个微信号），不能合并" in candidates
    assert f'name="absorb" value="{other.pk}"' not in candidates
    response = client.post(reverse("customer_merge", args=[keep.pk]), {"absorb": other.pk})
    assert "是企业微信里的两位联系人（两个微信号），不能合并为一位客户。" in (
        client.get(response["Location"]).content.decode()
    )
    other.refresh_from_db()
    assert other.merged_into_id is None and other.external_userid


def test_those_who_can_be_merged_in_are_found_first_the_same_name_before_the_rest(
    client_for, operator
):
    keep = CustomerFactory(name="林小雨")  # a WeCom contact
    contact = CustomerFactory(name="林小雨")
    longer = CustomerFactory(name="林小雨儿", external_userid=None)
    same = CustomerFactory(name="林小雨", external_userid=None)
    response = client_for(operator).get(
        reverse("customer_detail", args=[keep.pk]), {"merge_q": "林小雨"}
    )
    found = [candidate.pk for candidate in response.context["merge_candidates"]]
    assert found == [same.pk, longer.pk, contact.pk]


def _checkout(parent: str, *numbers: str) -> list[Order]:
    """Douyin sub-orders of one checkout, unmatched (a masked phone)."""
    return [
        OrderFactory(
            customer=None,
            channel="douyin",
            channel_order_id=number,
            parent_order_id=parent,
            buyer_phone_masked="138****5601",
            buyer_name="吴*",
            unmatched_reason="masked_phone",
        )
        for number in numbers
    ]


def _owners(orders: list[Order]) -> list[int | None]:
    return [Order.objects.get(pk=order.pk).customer_id for order in orders]


def test_a_guide_binds_a_whole_checkout_by_a_sub_order_or_its_own_number_and_it_is_undone_whole(
    client_for, guide_user, operator
):
    guide = Guide.objects.get(wecom_userid="guide0001")
    customer = RelationshipFactory(guide=guide).customer
    first = _checkout("P-1", "S-11", "S-12")
    second = _checkout("P-2", "S-21", "S-22", "S-23")
    client = client_for(guide_user)
    by_sub_order = client.post(
        reverse("order-bind"),
        {"customer_id": customer.pk, "order_number": "S-12"},
        content_type="application/json",
    )
    assert by_sub_order.status_code == 200, by_sub_order.content
    assert [o["channel_order_id"] for o in by_sub_order.json()["orders"]] == ["S-11", "S-12"]
    assert _owners(first) == [customer.pk] * 2
    services.order_bind_by_number(guide=guide, customer=customer, channel_order_id="P-2")
    assert _owners(second) == [customer.pk] * 3
    assert OrderBinding.objects.count() == 5
    # one binding's undo takes back its checkout, and leaves the other
    binding = OrderBinding.objects.get(order__channel_order_id="S-22")
    assert client_for(operator).post(reverse("binding_undo", args=[binding.pk])).status_code == 302
    assert _owners(second) == [None] * 3 and _owners(first) == [customer.pk] * 2
    assert all(Order.objects.get(pk=o.pk).unmatched_reason == "masked_phone" for o in second)
    assert OrderBinding.objects.filter(undone_at__isnull=False).count() == 3


def test_a_checkout_with_a_sub_order_of_another_customer_is_not_bound(guide_user):
    guide = Guide.objects.get(wecom_userid="guide0001")
    customer = RelationshipFactory(guide=guide).customer
    orders = _checkout("P-3", "S-31", "S-32")
    someone = CustomerFactory()
    Order.objects.filter(pk=orders[1].pk).update(customer=someone)
    with pytest.raises(LookupError, match="没有能绑定给这位客户的订单 S-31") as refused:
        services.order_bind_by_number(guide=guide, customer=customer, channel_order_id="S-31")
    assert "S-32 已属于另一位客户" in str(refused.value.__cause__)  # for the log, not the guide
    assert _owners(orders) == [None, someone.pk]
    assert not OrderBinding.objects.exists()


def test_a_guide_s_failed_bindings_are_limited_so_numbers_cannot_be_tried_in_bulk(
    client_for, guide_user, other_guide_user
):
    guide = Guide.objects.get(wecom_userid="guide0001")
    customer = RelationshipFactory(guide=guide).customer
    real = OrderFactory(customer=None, channel_order_id="REAL-1", buyer_id="tb_real")
    client = client_for(guide_user)

    def bind(number: str):
        return client.post(
            reverse("order-bind"), {"customer_id": customer.pk, "order_number": number}
        )

    for _ in range(services.GUIDE_BIND_FAILURES.per_hour + 1):  # nothing tried: no failure
        with pytest.raises(LookupError, match="^请填写订单号。$"):
            services.order_bind_by_number(guide=guide, customer=customer, channel_order_id=" ")
    for n in range(services.GUIDE_BIND_FAILURES.per_hour):
        assert bind(f"GUESS-{n}").status_code == 404
    refused = bind(real.channel_order_id)
    assert refused.status_code == 429 and "一小时内绑定失败" in refused.json()["detail"]
    assert 3540 <= int(refused["Retry-After"]) <= 3600  # the hour from the first failure
    real.refresh_from_db()
    assert real.customer_id is None
    # another guide is not held back by it
    other = Guide.objects.get(wecom_userid="guide0002")
    theirs = RelationshipFactory(guide=other).customer
    assert services.order_bind_by_number(guide=other, customer=theirs, channel_order_id="REAL-1")
