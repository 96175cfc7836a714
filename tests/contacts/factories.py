import factory

from contacts.models import Guide, Store


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
