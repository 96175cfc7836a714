from datetime import UTC, datetime
from decimal import Decimal

import factory

from contacts.models import Customer, Guide, Order, Relationship, Store


class StoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Store
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"ST{n:03d}")
    name = factory.Faker("city_name", locale="zh_CN")
    city = factory.Faker("city_name", locale="zh_CN")


class GuideFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Guide
        django_get_or_create = ("wecom_userid",)

    wecom_userid = factory.Sequence(lambda n: f"guide{n:04d}")
    name = factory.Faker("name", locale="zh_CN")
    store = factory.SubFactory(StoreFactory)


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    external_userid = factory.Sequence(lambda n: f"wm{n:030d}")
    name = factory.Faker("name", locale="zh_CN")
    type = Customer.Type.WECHAT
    is_member = True
    joined_at = factory.Faker("date_time_between", start_date="-2y", tzinfo=UTC)


class RelationshipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Relationship

    customer = factory.SubFactory(CustomerFactory)
    guide = factory.SubFactory(GuideFactory)
    added_at = factory.LazyAttribute(
        lambda o: o.customer.joined_at or datetime(2025, 6, 1, tzinfo=UTC)
    )


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    channel = "tmall"
    channel_order_id = factory.Sequence(lambda n: f"T{n:012d}")
    status = Order.Status.PAID
    paid_at = factory.Faker("date_time_between", start_date="-1y", tzinfo=UTC)
    amount = Decimal("89.00")
    content_hash = factory.Sequence(lambda n: f"{n:032x}")
