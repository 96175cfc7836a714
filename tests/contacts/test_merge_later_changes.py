"""A merge and its undo when things happened in between: another merge of the same
customers, an import, a suggestion, a guide's binding, the person deleting the guide.
Found by a review that probed each case; each test failed before its fix."""

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.urls import reverse

from contacts import services
from contacts.models import (
    Customer,
    CustomerIdentity,
    MergeSuggestion,
    Order,
    Relationship,
    SyncRun,
)
from contacts.order_files.lines import GENERIC_COLUMNS
from contacts.phones import phone_hash, phone_mask, phone_normalise
from contacts.wecom_sync import SyncProgress, WeComWriter
from tests.contacts.factories import (
    CustomerFactory,
    GuideFactory,
    OrderFactory,
    RelationshipFactory,
)
from tests.helpers import another_waits_for_a_lock, wait_for

pytestmark = pytest.mark.django_db


def _buyer(name: str, key: str) -> Customer:
    """Seen only in orders: one buyer id, one order."""
    customer = CustomerFactory(external_userid=None, is_member=False, joined_at=None, name=name)
    CustomerIdentity.objects.create(customer=customer, kind="buyer_id", value=key)
    OrderFactory(customer=customer)
    return customer


def _give_phone(customer: Customer, phone: str) -> None:
    e164 = phone_normalise(phone)
    CustomerIdentity.objects.create(
        customer=customer, kind="phone_hash", value=phone_hash(e164), display=phone_mask(e164)
    )


def _state() -> list:
    return [
        sorted(
            Customer.objects.values_list(
                "pk", "name", "external_userid", "merged_into_id", "is_member", "joined_at"
            )
        ),
        sorted(CustomerIdentity.objects.values_list("pk", "customer_id")),
        sorted(Order.objects.values_list("pk", "customer_id")),
        sorted(Relationship.objects.values_list("pk", "customer_id")),
    ]


def test_a_chain_of_merges_is_undone_last_first(operator):
    """A <- B (B's WeCom contact moves to A), then C <- A (it moves on to C)."""
    a, c = _buyer("A", "tmall:a"), _buyer("C", "tmall:c")
    b = RelationshipFactory(customer=CustomerFactory(name="B")).customer
    before = _state()
    first = services.customer_merge(keep=a, absorb=b, by=operator)
    second = services.customer_merge(keep=c, absorb=a, by=operator)
    with pytest.raises(ValueError, match="请先撤销那次合并"):
        services.customer_merge_undo(merge=first, by=operator)
    services.customer_merge_undo(merge=second, by=operator)
    services.customer_merge_undo(merge=first, by=operator)
    assert _state() == before


def test_a_pending_suggestion_follows_the_merge_and_comes_back_on_undo(operator):
    absorb = CustomerFactory(external_userid=None, name="赵敏", is_member=False)
    keep = CustomerFactory(name="赵敏")
    order = OrderFactory(customer=None, buyer_phone_masked="138****5601", buyer_name="赵*")
    suggestion = MergeSuggestion.objects.create(order=order, customer=absorb, reason="r")
    merge = services.customer_merge(keep=keep, absorb=absorb, by=operator)
    suggestion.refresh_from_db()
    assert suggestion.customer_id == keep.pk
    services.customer_merge_undo(merge=merge, by=operator)
    suggestion.refresh_from_db()
    assert (suggestion.customer_id, suggestion.status) == (absorb.pk, "pending")
    services.customer_merge(keep=keep, absorb=absorb, by=operator)
    suggestion.refresh_from_db()
    services.merge_suggestions_decide(suggestions=[suggestion], confirm=True, by=operator)
    order.refresh_from_db()
    assert order.customer_id == keep.pk


def test_a_suggestion_confirmed_since_the_merge_goes_back_with_its_order_on_undo(operator):
    """The masked phone is the absorbed customer's: confirmed after the merge, its order
    is theirs again when the merge is undone, the keys it added too, and undoing the
    confirmation afterwards leaves the suggestion pending for them."""
    absorb = CustomerFactory(external_userid=None, name="梁英怡", is_member=False)
    keep = CustomerFactory(name="罗静")
    order = OrderFactory(
        customer=None, channel="douyin", buyer_phone_masked="152****1541", buyer_name="梁*",
        buyer_id="dy-61", unmatched_reason="打码",
    )  # fmt: skip
    suggestion = MergeSuggestion.objects.create(order=order, customer=absorb, reason="r")
    merge = services.customer_merge(keep=keep, absorb=absorb, by=operator)
    suggestion.refresh_from_db()
    services.merge_suggestions_decide(suggestions=[suggestion], confirm=True, by=operator)
    assert CustomerIdentity.objects.get(value="douyin:dy-61").customer_id == keep.pk
    services.customer_merge_undo(merge=merge, by=operator)
    order.refresh_from_db()
    suggestion.refresh_from_db()
    assert order.customer_id == absorb.pk
    assert (suggestion.customer_id, suggestion.status) == (absorb.pk, "confirmed")
    assert CustomerIdentity.objects.get(value="douyin:dy-61").customer_id == absorb.pk
    services.merge_suggestions_undo(suggestions=[suggestion])
    order.refresh_from_db()
    suggestion.refresh_from_db()
    assert (order.customer_id, order.unmatched_reason) == (None, "打码")
    assert (suggestion.customer_id, suggestion.status) == (absorb.pk, "pending")
    assert not CustomerIdentity.objects.filter(value="douyin:dy-61").exists()


def test_a_suggestion_for_a_customer_merged_away_is_not_confirmed(operator):
    """One left from before suggestions followed merges: the order would go to a record
    no page, report or rule counts."""
    gone, kept = CustomerFactory(external_userid=None), CustomerFactory()
    order = OrderFactory(customer=None, buyer_phone_masked="138****5601", buyer_name="赵*")
    suggestion = MergeSuggestion.objects.create(order=order, customer=gone, reason="r")
    Customer.objects.filter(pk=gone.pk).update(merged_into=kept)
    with pytest.raises(ValueError, match="已合并到另一位客户"):
        services.merge_suggestions_decide(suggestions=[suggestion], confirm=True, by=operator)
    order.refresh_from_db()
    assert order.customer_id is None


def test_a_guide_does_not_bind_to_a_customer_merged_away(operator, store):
    """A guide both records had still follows the merged-away one (two rows for one guide
    and person cannot both be kept)."""
    guide = GuideFactory(store=store, user=get_user_model().objects.create(username="g"))
    keep = RelationshipFactory(guide=guide).customer
    absorb = RelationshipFactory(guide=guide, customer__external_userid=None).customer
    services.customer_merge(keep=keep, absorb=absorb, by=operator)
    OrderFactory(customer=None, channel_order_id="T777", buyer_id="tb777")
    absorb.refresh_from_db()
    with pytest.raises(PermissionError, match=f"已合并到 #{keep.pk}"):
        services.order_bind_by_number(guide=guide, customer=absorb, channel_order_id="T777")
    assert Order.objects.get(channel_order_id="T777").customer_id is None


def _row(order_id: str, phone: str, buyer_id: str = "") -> dict:
    row = dict.fromkeys(GENERIC_COLUMNS, "")
    row.update(
        order_id=order_id,
        channel="pos",
        status="paid",
        paid_at="2026-03-03T11:18:43+08:00",
        buyer_phone=phone,
        buyer_id=buyer_id,
        buyer_name="王芳",
        sku="S1",
        product_name="p",
        quantity="1",
        unit_price="89.00",
        line_amount="89.00",
        refund_amount="0",
    )
    return row


def test_orders_linked_through_the_merged_in_phone_go_back_with_it(operator):
    phone = "13812345601"
    keep = CustomerFactory(name="王芳")
    absorb = CustomerFactory(external_userid=None, is_member=False, name="王芳")
    _give_phone(absorb, phone)
    merge = services.customer_merge(keep=keep, absorb=absorb, by=operator)
    services.orders_push(rows=[_row("POS-NEW-1", phone, buyer_id="m1")])
    assert Order.objects.get(channel_order_id="POS-NEW-1").customer_id == keep.pk
    services.customer_merge_undo(merge=merge, by=operator)
    assert Order.objects.get(channel_order_id="POS-NEW-1").customer_id == absorb.pk
    # The buyer id that order gave the kept customer went back too: one person's orders
    # stay together, by phone or by buyer id.
    keys = set(absorb.identities.values_list("value", flat=True))
    assert keys == {phone_hash(phone_normalise(phone)), "pos:m1"}
    assert not keep.identities.exists()
    services.orders_push(rows=[_row("POS-NEW-2", phone), _row("POS-NEW-3", "", buyer_id="m1")])
    theirs = Order.objects.filter(customer=absorb).values_list("channel_order_id", flat=True)
    assert set(theirs) == {"POS-NEW-1", "POS-NEW-2", "POS-NEW-3"}


def test_a_suggestion_made_since_through_the_merged_in_phone_goes_back_with_it(operator):
    """After the merge the kept customer has the phone of the one merged in: an order with
    that phone masked gets a suggestion for the kept customer. Undone, the suggestion is
    what an import makes now: for the one merged in when their name fits, none when the
    order's masked phone and name fit no one any more."""
    keep = CustomerFactory(name="王芳")
    absorb = CustomerFactory(external_userid=None, is_member=False, name="王芳")
    other = CustomerFactory(external_userid=None, is_member=False, name="李娜")
    _give_phone(absorb, "13812345601")
    _give_phone(other, "13912345602")
    merges = [
        services.customer_merge(keep=keep, absorb=absorb, by=operator),
        services.customer_merge(keep=keep, absorb=other, by=operator),
    ]
    rows = [_row("JD-M-1", "138****5601"), _row("JD-M-2", "139****5602")]
    rows[0]["buyer_name"] = "王*"
    rows[1]["buyer_name"] = "王芳"  # fits the kept customer's name, not 李娜
    services.orders_push(rows=rows)
    made = MergeSuggestion.objects.filter(status="pending")
    assert sorted(made.values_list("order__channel_order_id", "customer_id")) == [
        ("JD-M-1", keep.pk),
        ("JD-M-2", keep.pk),
    ]
    for merge in reversed(merges):
        services.customer_merge_undo(merge=merge, by=operator)
    assert list(made.values_list("order__channel_order_id", "customer_id")) == [
        ("JD-M-1", absorb.pk)
    ]
    # The import, on the customers as they are now, makes the same.
    Order.objects.filter(channel_order_id__in=["JD-M-1", "JD-M-2"]).delete()
    services.orders_push(rows=rows)
    assert list(made.values_list("order__channel_order_id", "customer_id")) == [
        ("JD-M-1", absorb.pk)
    ]


def test_membership_after_an_undo_is_what_the_relationships_say(operator):
    keep = CustomerFactory(external_userid=None, is_member=False, joined_at=None, name="买家")
    absorb = CustomerFactory(name="联系人")
    relationship = RelationshipFactory(customer=absorb)
    merge = services.customer_merge(keep=keep, absorb=absorb, by=operator)
    services.relationship_end(  # the person deletes the guide while merged
        event={
            "ChangeType": "del_follow_user",
            "ExternalUserID": absorb.external_userid,
            "UserID": relationship.guide.wecom_userid,
            "CreateTime": "1770000000",
        }
    )
    services.customer_merge_undo(merge=merge, by=operator)
    absorb.refresh_from_db()
    keep.refresh_from_db()
    assert not absorb.is_member and not keep.is_member
    assert absorb.joined_at == relationship.added_at


def test_an_order_the_kept_customer_had_a_key_for_stays_with_them(operator):
    """Its unionid was the kept customer's before the merge: the import would have linked
    it to them without the merge, as unionids are matched first."""
    phone = "13812345602"
    keep = CustomerFactory(name="王芳")
    CustomerIdentity.objects.create(customer=keep, kind="unionid", value="UKEEP")
    absorb = CustomerFactory(external_userid=None, is_member=False, name="王芳")
    _give_phone(absorb, phone)
    merge = services.customer_merge(keep=keep, absorb=absorb, by=operator)
    services.orders_push(rows=[_row("POS-BOTH", phone) | {"buyer_unionid": "UKEEP"}])
    services.customer_merge_undo(merge=merge, by=operator)
    assert Order.objects.get(channel_order_id="POS-BOTH").customer_id == keep.pk


def test_an_order_linked_through_a_buyer_id_an_order_going_back_gave_follows_it(operator):
    phone = "13812345603"
    keep = CustomerFactory(name="王芳")
    absorb = CustomerFactory(external_userid=None, is_member=False, name="王芳")
    _give_phone(absorb, phone)
    merge = services.customer_merge(keep=keep, absorb=absorb, by=operator)
    services.orders_push(rows=[_row("POS-A", phone, buyer_id="x")])  # phone and buyer id x
    services.orders_push(rows=[_row("POS-B", "", buyer_id="x")])  # buyer id x alone
    services.customer_merge_undo(merge=merge, by=operator)
    theirs = Order.objects.filter(customer=absorb).values_list("channel_order_id", flat=True)
    assert set(theirs) == {"POS-A", "POS-B"}
    assert not keep.identities.exists()


@pytest.mark.django_db(transaction=True)  # each merge commits, and lets go of the lock
def test_a_merge_or_an_undo_waits_for_no_import(operator):
    """An import links orders to customers under its lock; a merge in between would leave
    them on the wrong record. Here another connection holds the lock as an import does."""
    import psycopg2
    from django.db import connection

    from contacts.order_import import ORDER_IMPORT_LOCK

    keep, absorb = CustomerFactory(), _buyer("B", "tmall:b")
    merge = services.customer_merge(keep=keep, absorb=absorb, by=operator)
    settings = connection.settings_dict
    other = psycopg2.connect(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"], port=settings["PORT"]
    )
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [ORDER_IMPORT_LOCK])
            assert cursor.fetchone()[0]
        with pytest.raises(ValueError, match="正在导入订单"):
            services.customer_merge_undo(merge=merge, by=operator)
        with pytest.raises(ValueError, match="正在导入订单"):
            services.customer_merge(keep=keep, absorb=_buyer("C", "tmall:c"), by=operator)
        with other.cursor() as cursor:  # the import is done
            cursor.execute("SELECT pg_advisory_unlock(%s)", [ORDER_IMPORT_LOCK])
    finally:
        other.close()
    services.customer_merge_undo(merge=merge, by=operator)
    absorb.refresh_from_db()
    assert absorb.merged_into_id is None


def test_undoing_a_merge_leaves_what_a_later_merge_brought(operator):
    """A <- B (B's WeCom contact moves to A), then A <- C (C brings a relationship): undoing
    the first gives B back its own, and C's stays with A until that merge is undone."""
    a = _buyer("A", "tmall:a")
    b = RelationshipFactory(customer=CustomerFactory(name="B")).customer
    c = CustomerFactory(external_userid=None, name="C")
    brought = RelationshipFactory(customer=c)
    first = services.customer_merge(keep=a, absorb=b, by=operator)
    services.customer_merge(keep=a, absorb=c, by=operator)
    services.customer_merge_undo(merge=first, by=operator)
    brought.refresh_from_db()
    assert brought.customer_id == a.pk
    assert set(Relationship.objects.filter(customer=b).values_list("pk", flat=True)) == set(
        first.moved["relationships"]
    )


@pytest.mark.parametrize("params", [{"guide": "²"}, {"store": "²"}])
def test_a_digit_int_cannot_read_is_not_found(client_for, operator, params):
    assert client_for(operator).get(reverse("customers"), params).status_code == 404


def _synced_item(customer: Customer, guide) -> dict:
    """batch/get_by_user's item for the customer's WeCom contact followed by the guide."""
    return {
        "external_contact": {"external_userid": customer.external_userid, "name": customer.name},
        "follow_info": {"userid": guide.wecom_userid, "createtime": 1770000000},
    }


@pytest.mark.django_db(transaction=True)  # the sync's write and the merge: two connections
def test_a_merge_waits_for_a_sync_write_under_way(operator):
    """A sync's write batch finds customers by external_userid, then writes their
    relationships: a merge moving a contact in between would leave the new relationship
    on the customer merged away. So a merge waits for the batch, whoever it writes."""
    keep = _buyer("买家", "tmall:k")
    absorb = RelationshipFactory(customer=CustomerFactory(name="联系人")).customer
    someone = CustomerFactory(name="别人")
    errors = []

    def merge() -> None:
        try:
            services.customer_merge(keep=keep, absorb=absorb, by=operator)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    worker = threading.Thread(target=merge)
    with transaction.atomic():  # a write batch of the sync, of another contact
        WeComWriter(progress=SyncProgress(), source="sync").relations(
            [_synced_item(someone, GuideFactory())]
        )
        worker.start()
        wait_for(another_waits_for_a_lock, timeout=5, interval=0.05)
        assert worker.is_alive()
    worker.join()
    assert not errors
    absorb.refresh_from_db()
    assert absorb.merged_into_id == keep.pk
    assert not Relationship.objects.filter(customer=absorb).exists()


def test_a_relationship_a_running_sync_saw_before_a_merge_is_not_ended_by_it(operator):
    """The sync saw the contact's relationship, a merge moved it, the sync ends: what it
    saw is live."""
    keep = _buyer("买家", "tmall:k")
    relationship = RelationshipFactory(customer=CustomerFactory(name="联系人"))
    absorb = relationship.customer
    run = SyncRun.objects.create()
    writer = WeComWriter(progress=SyncProgress(), source="sync", run_id=run.pk)
    writer.relations([_synced_item(absorb, relationship.guide)])
    merge = services.customer_merge(keep=keep, absorb=absorb, by=operator)
    writer.end_unseen_relationships()
    relationship.refresh_from_db()
    assert relationship.is_active and relationship.customer_id == keep.pk
    # and the other way: the next run sees it on the kept customer, an undo moves it back
    run = SyncRun.objects.create()
    writer = WeComWriter(progress=SyncProgress(), source="sync", run_id=run.pk)
    writer.relations([_synced_item(Customer.objects.get(pk=keep.pk), relationship.guide)])
    services.customer_merge_undo(merge=merge, by=operator)
    writer.end_unseen_relationships()
    relationship.refresh_from_db()
    assert relationship.is_active and relationship.customer_id == absorb.pk
