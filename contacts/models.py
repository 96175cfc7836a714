from django.conf import settings
from django.db import models


class Store(models.Model):
    """A physical store of the brand (a WeCom department); guides work in one."""

    code = models.CharField("门店编码", max_length=32, unique=True)
    name = models.CharField("门店名称", max_length=100)
    city = models.CharField("城市", max_length=50, blank=True)
    wecom_department_id = models.BigIntegerField(
        "企业微信部门ID", null=True, blank=True, unique=True
    )

    class Meta:
        ordering = ["code"]
        verbose_name = "门店"
        verbose_name_plural = "门店"

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class GuideQuerySet(models.QuerySet):
    def active(self) -> "GuideQuerySet":
        return self.filter(is_active=True)


class Guide(models.Model):
    """A shop guide (导购): a WeCom member who follows customers.

    `wecom_userid` is the member's WeCom userid; the platform user who logs in
    as this guide is linked through `user`.
    """

    wecom_userid = models.CharField("企业微信 UserID", max_length=64, unique=True)
    name = models.CharField("姓名", max_length=100)
    store = models.ForeignKey(
        Store, on_delete=models.PROTECT, null=True, blank=True, related_name="guides"
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="guide",
    )
    is_active = models.BooleanField("在职", default=True)

    objects = GuideQuerySet.as_manager()

    class Meta:
        ordering = ["wecom_userid"]
        verbose_name = "导购"
        verbose_name_plural = "导购"

    def __str__(self) -> str:
        return f"{self.name} ({self.wecom_userid})"
