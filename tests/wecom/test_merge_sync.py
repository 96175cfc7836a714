"""A merge that takes in a WeCom contact, against the emulator: the contact moves to the
customer kept, so later syncs and callbacks find that customer, and undo gives it back.
Two WeCom contacts are not merged."""

from io import StringIO

import pytest
from django.core.management import call_command

from contacts import services
from contacts.models import Customer, Relationship

pytestmark = pytest.mark.django_db


def _sync() -> None:
    call_command("sync_wecom", "--full", "--inline", "--json", stdout=StringIO())


def _live(customer) -> set[str]:
    rows = Relationship.objects.filter(customer=customer, is_active=True)
    return set(rows.values_list("guide__wecom_userid", flat=True))


def _contact_state() -> list[tuple]:
    return sorted(
        Customer.objects.values_list(
            "pk", "external_userid", "type", "avatar", "unionid", "is_member", "merged_into_id"
        )
    )


def _relationships() -> list[tuple]:
    return sorted(Relationship.objects.values_list("pk", "customer_id", "guide_id", "is_active"))


def test_a_merged_in_wecom_contact_stays_with_the_kept_customer_through_syncs(emulator, operator):
    _sync()
    contact = Customer.objects.filter(relationships__is_active=True).order_by("pk").first()
    external_userid = contact.external_userid
    guides = {
        userid
        for userid, follows in emulator.data.follows.items()
        if any(f["external_userid"] == external_userid for f in follows)
    }
    assert _live(contact) == guides
    buyer = Customer.objects.create(name="订单买家")  # seen only in orders: no contact
    before_state, before_relationships = _contact_state(), _relationships()

    merge = services.customer_merge(keep=buyer, absorb=contact, by=operator)
    buyer.refresh_from_db()
    assert buyer.external_userid == external_userid and buyer.type == contact.type
    assert buyer.is_member and _live(buyer) == guides
    _sync()  # the nightly reconcile: WeCom still lists the contact with the same guides
    assert _live(buyer) == guides
    assert not Relationship.objects.filter(customer=contact).exists()
    assert len(_relationships()) == len(before_relationships)  # nothing made twice

    services.customer_merge_undo(merge=merge, by=operator)
    assert _contact_state() == before_state and _relationships() == before_relationships
    _sync()
    assert _live(Customer.objects.get(pk=contact.pk)) == guides and not _live(buyer)


def test_two_wecom_contacts_are_not_merged(emulator, operator):
    _sync()
    first, second = Customer.objects.filter(external_userid__isnull=False).order_by("pk")[:2]
    before_state, before_relationships = _contact_state(), _relationships()
    with pytest.raises(ValueError, match="两位联系人"):
        services.customer_merge(keep=first, absorb=second, by=operator)
    assert _contact_state() == before_state and _relationships() == before_relationships


def test_what_wecom_gave_the_contact_while_merged_goes_back_with_it_on_undo(emulator, operator):
    """Between the merge and its undo the person adds another guide, with a remark mobile,
    and a sync stores it on the kept customer (the contact is theirs then)."""
    _sync()
    contact = Customer.objects.filter(relationships__is_active=True).order_by("pk").first()
    external_userid = contact.external_userid
    buyer = Customer.objects.create(name="订单买家")
    merge = services.customer_merge(keep=buyer, absorb=contact, by=operator)
    followed = {
        userid
        for userid, follows in emulator.data.follows.items()
        if any(f["external_userid"] == external_userid for f in follows)
    }
    new_guide = next(userid for userid in emulator.data.follows if userid not in followed)
    with emulator.lock:
        emulator.data.follows[new_guide].append(
            {
                "external_userid": external_userid,
                "userid": new_guide,
                "remark": "",
                "description": "",
                "createtime": 1770000000,
                "tag_id": [],
                "oper_userid": external_userid,
                "add_way": 1,
                "remark_mobiles": ["13900001111"],
            }
        )
        emulator.data.touch()
    _sync()
    assert _live(buyer) == followed | {new_guide}
    assert buyer.identities.filter(display="139****1111").exists()

    services.customer_merge_undo(merge=merge, by=operator)
    buyer.refresh_from_db()
    assert (buyer.name, buyer.external_userid, buyer.is_member) == ("订单买家", None, False)
    assert not Relationship.objects.filter(customer=buyer).exists()
    assert not buyer.identities.exists()
    assert contact.identities.filter(display="139****1111").exists()
    _sync()
    assert not Relationship.objects.filter(customer=buyer).exists()  # no churn made up
    assert _live(contact) == followed | {new_guide}
