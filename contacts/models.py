import re
from datetime import timedelta

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop, pgettext_lazy

from contacts.phones import phone_hash, phone_normalise
from scrm.reasons import reason_text
from scrm.roles import Perm

_PHONE_TEXT = re.compile(r"[\d\s()+-]+")  # 138 0013 5601, +86-138…


def searched_phone(text: str) -> str | None:
    """The phone number (E.164) a search text is, if it is one: only a text made of a
    phone's characters is ("T13812345678" is an order number)."""
    text = text.strip()
    return phone_normalise(text) if _PHONE_TEXT.fullmatch(text) else None


class Store(models.Model):
    """A physical store of the brand (a WeCom department); guides work in one."""

    code = models.CharField("门店编码", max_length=32, unique=True)
    name = models.CharField("门店名称", max_length=100)
    city = models.CharField("城市", max_length=50, blank=True)
    wecom_department_id = models.BigIntegerField(
        "企业微信部门ID", null=True, blank=True, unique=True
    )
    # The store manager's WeCom userid: guides' overdue tasks are escalated to them.
    manager_userid = models.CharField("店长 UserID", max_length=64, blank=True, db_default="")

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


class CustomerQuerySet(models.QuerySet):
    def visible_to(self, user) -> "CustomerQuerySet":
        """Console viewers see the brand; a guide only customers they follow (live)."""
        if user.has_perm(Perm.VIEW_CONSOLE):
            return self
        guide = getattr(user, "guide", None)
        if guide is None or not user.has_perm(Perm.USE_GUIDE_APP):
            return self.none()
        return self.followed_by(guide)

    def unmerged(self) -> "CustomerQuerySet":
        """People: not the records merged into another (kept for the merge's undo)."""
        return self.filter(merged_into__isnull=True)

    def followed_by(self, guide: "Guide") -> "CustomerQuerySet":
        return self.filter(
            models.Exists(
                Relationship.objects.filter(
                    customer=models.OuterRef("pk"), guide=guide, is_active=True
                )
            )
        )

    def in_store(self, store_id: int) -> "CustomerQuerySet":
        return self.filter(
            models.Exists(
                Relationship.objects.filter(
                    customer=models.OuterRef("pk"), guide__store_id=store_id, is_active=True
                )
            )
        )

    def with_corp_tag(self, wecom_tag_id: str) -> "CustomerQuerySet":
        return self.filter(
            models.Exists(
                Relationship.objects.filter(
                    customer=models.OuterRef("pk"), wecom_tag_ids__contains=[wecom_tag_id]
                )
            )
        )

    def churned(self) -> "CustomerQuerySet":
        """Former members: every relationship ended."""
        return self.filter(
            models.Exists(Relationship.objects.filter(customer=models.OuterRef("pk"))),
            is_member=False,
        )

    def search(self, text: str) -> "CustomerQuerySet":
        """Name (substring), WeCom external id, unionid or channel buyer id (exact), phone
        (exact, by hash) or the number of one of their orders in any channel (exact)."""
        from contacts.order_files import ORDER_CHANNELS

        text = text.replace("\0", "").strip()  # no text stored holds a NUL (Postgres refuses it)
        if not text:
            return self.none()
        e164 = searched_phone(text)
        if e164:
            return self.filter(
                identities__kind=CustomerIdentity.Kind.PHONE_HASH,
                identities__value=phone_hash(e164),
            )
        # Found once, by (channel, order id) for each channel: the orders' unique index.
        ordered = Order.objects.filter(channel__in=ORDER_CHANNELS, channel_order_id=text)
        # Likewise the identities' unique (kind, value): a buyer id is kept as channel:id.
        keyed = CustomerIdentity.objects.filter(
            models.Q(kind=CustomerIdentity.Kind.UNIONID, value=text)
            | models.Q(
                kind=CustomerIdentity.Kind.BUYER_ID,
                value__in=[f"{channel}:{text}" for channel in ORDER_CHANNELS],
            )
        )
        return self.filter(
            models.Q(name__icontains=text)
            | models.Q(external_userid=text)
            | models.Q(pk__in=ordered.values("customer_id"))
            | models.Q(pk__in=keyed.values("customer_id"))
        )


class Customer(models.Model):
    """One real person the brand knows, as a WeCom contact, a buyer or both.

    `external_userid` is set for WeCom contacts (the sync key). A customer is a
    private-domain member while at least one relationship to a guide is live.
    """

    class Type(models.IntegerChoices):
        UNKNOWN = 0, pgettext_lazy("Customer.Type", "未知")
        WECHAT = 1, pgettext_lazy("Customer.Type", "微信用户")
        WECOM = 2, pgettext_lazy("Customer.Type", "企业微信用户")

    class Gender(models.IntegerChoices):
        UNKNOWN = 0, pgettext_lazy("Customer.Gender", "未知")
        MALE = 1, pgettext_lazy("Customer.Gender", "男")
        FEMALE = 2, pgettext_lazy("Customer.Gender", "女")

    # Unique and indexed through Meta: a field's unique=True or db_index=True adds a
    # second, varchar_pattern_ops index for LIKE 'x%' lookups, which nothing makes.
    external_userid = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - many without one
    name = models.CharField("名称", max_length=100, blank=True)
    type = models.SmallIntegerField(choices=Type.choices, default=Type.UNKNOWN)
    gender = models.SmallIntegerField(choices=Gender.choices, default=Gender.UNKNOWN)
    avatar = models.URLField(max_length=500, blank=True)
    corp_name = models.CharField(max_length=100, blank=True)
    unionid = models.CharField(max_length=64, blank=True)
    # Ranges of joined_at are served by customer_joined_idx.
    joined_at = models.DateTimeField("入会时间", null=True, blank=True)
    birthday = models.DateField("生日", null=True, blank=True)
    is_member = models.BooleanField("私域会员", default=False)  # half of them: no index helps
    # Set when this record was merged into another (kept for an exact undo).
    merged_into = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        verbose_name = "客户"
        verbose_name_plural = "客户"
        constraints = [
            models.UniqueConstraint(fields=["external_userid"], name="customer_external_userid_key")
        ]
        indexes = [
            models.Index(fields=["unionid"], name="customer_unionid_idx"),
            # Substring search on names stays fast at millions of customers.
            GinIndex(fields=["name"], name="customer_name_trgm", opclasses=["gin_trgm_ops"]),
            # The list's default order (newest members first, NULLs last) and its keyset.
            models.Index(
                models.F("joined_at").desc(nulls_last=True),
                models.F("id").desc(),
                name="customer_joined_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.external_userid or f"customer {self.pk}"

    @property
    def label(self) -> str:
        """黄婷 #37336: the name and the number, where customers of one name are told
        apart (merges, bindings, suggestions)."""
        return f"{self.name or '—'} #{self.pk}"


class Relationship(models.Model):
    """A guide following a customer in WeCom (follow_user), live or ended.

    Kept after either side deletes the other (is_active False, with who and
    when), so history and churn stay countable.
    """

    class EndedBy(models.TextChoices):
        GUIDE = "guide", pgettext_lazy("Relationship.EndedBy", "导购删除客户")
        CUSTOMER = "customer", pgettext_lazy("Relationship.EndedBy", "客户删除导购")
        SYNC = "sync", pgettext_lazy("Relationship.EndedBy", "同步时已不存在")

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="relationships")
    guide = models.ForeignKey(Guide, on_delete=models.PROTECT, related_name="relationships")
    remark = models.CharField("备注", max_length=100, blank=True)
    description = models.CharField("描述", max_length=300, blank=True)
    remark_corp_name = models.CharField(max_length=100, blank=True)
    remark_mobiles = ArrayField(models.CharField(max_length=32), default=list, blank=True)
    added_at = models.DateTimeField("添加时间", db_index=True)
    add_way = models.IntegerField("添加方式", default=0)
    oper_userid = models.CharField(max_length=64, blank=True)
    state = models.CharField("渠道 (state)", max_length=64, blank=True, db_index=True)
    wecom_tag_ids = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    is_active = models.BooleanField(default=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.CharField(max_length=16, choices=EndedBy.choices, blank=True)
    # The sync run that last saw this relationship in WeCom; a full sync ends
    # the live relationships it did not see.
    seen_by_run = models.BigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "好友关系"
        verbose_name_plural = "好友关系"
        constraints = [
            models.UniqueConstraint(fields=["customer", "guide"], name="relationship_unique")
        ]
        indexes = [
            models.Index(fields=["guide", "is_active"], name="relationship_guide_idx"),
            GinIndex(fields=["wecom_tag_ids"], name="relationship_tags_gin"),
        ]

    def __str__(self) -> str:
        return f"{self.guide_id} → {self.customer_id}"


class RelationshipEvent(models.Model):
    """Something that happened to a relationship: the growth and churn history."""

    class Kind(models.TextChoices):
        ADDED = "added", pgettext_lazy("RelationshipEvent.Kind", "添加")
        EDITED = "edited", pgettext_lazy("RelationshipEvent.Kind", "编辑")
        DELETED_BY_GUIDE = (
            "deleted_by_guide",
            pgettext_lazy("RelationshipEvent.Kind", "导购删除客户"),
        )
        DELETED_BY_CUSTOMER = (
            "deleted_by_customer",
            pgettext_lazy("RelationshipEvent.Kind", "客户删除导购（流失提醒）"),
        )
        TRANSFER_FAILED = "transfer_failed", pgettext_lazy("RelationshipEvent.Kind", "转接失败")
        # A full sync found it gone: deleted while no callback reached us.
        ENDED = "ended", pgettext_lazy("RelationshipEvent.Kind", "同步发现已删除")

    class Source(models.TextChoices):
        CALLBACK = "callback", pgettext_lazy("RelationshipEvent.Source", "回调")
        SYNC = "sync", pgettext_lazy("RelationshipEvent.Source", "同步")

    relationship = models.ForeignKey(Relationship, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    source = models.CharField(max_length=16, choices=Source.choices)
    occurred_at = models.DateTimeField(db_index=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "关系事件"
        verbose_name_plural = "关系事件"
        indexes = [
            models.Index(fields=["kind", "-occurred_at"], name="relationship_event_kind_idx")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.relationship_id} @ {self.occurred_at:%Y-%m-%d %H:%M}"


class CustomerIdentity(models.Model):
    """A key that identifies a customer: unionid, phone hash or a channel buyer id."""

    class Kind(models.TextChoices):
        UNIONID = "unionid", "UnionID"
        PHONE_HASH = "phone_hash", pgettext_lazy("CustomerIdentity.Kind", "手机号")
        BUYER_ID = "buyer_id", pgettext_lazy("CustomerIdentity.Kind", "渠道买家ID")

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    value = models.CharField(max_length=128)
    # Masked form for display (e.g. 138****5601); the full phone is never stored.
    display = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "身份标识"
        verbose_name_plural = "身份标识"
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="identity_unique")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.display or self.value}"


class CorpTagGroup(models.Model):
    """A WeCom corp tag group, as WeCom has it (the tagging app maps its tags onto these)."""

    wecom_group_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    order = models.BigIntegerField(default=0)
    is_deleted = models.BooleanField(default=False)

    class Meta:
        verbose_name = "企业标签组"
        verbose_name_plural = "企业标签组"

    def __str__(self) -> str:
        return self.name


class CorpTag(models.Model):
    """A WeCom corp tag, as WeCom has it."""

    group = models.ForeignKey(CorpTagGroup, on_delete=models.CASCADE, related_name="tags")
    wecom_tag_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    order = models.BigIntegerField(default=0)
    is_deleted = models.BooleanField(default=False)

    class Meta:
        verbose_name = "企业标签"
        verbose_name_plural = "企业标签"

    def __str__(self) -> str:
        return self.name


class CustomerGroup(models.Model):
    """A WeCom customer group chat (客户群) owned by a guide."""

    chat_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=100, blank=True)
    owner_userid = models.CharField(max_length=64, db_index=True)
    notice = models.TextField(blank=True)
    created_at_wecom = models.DateTimeField(null=True, blank=True)
    status = models.SmallIntegerField(default=0)
    member_version = models.CharField(max_length=64, blank=True)
    member_count = models.IntegerField(default=0)
    is_dismissed = models.BooleanField(default=False)

    class Meta:
        verbose_name = "客户群"
        verbose_name_plural = "客户群"

    def __str__(self) -> str:
        return self.name or self.chat_id


class CustomerGroupMember(models.Model):
    """A member of a customer group: a customer (type 2) or staff (type 1)."""

    group = models.ForeignKey(CustomerGroup, on_delete=models.CASCADE, related_name="members")
    userid = models.CharField(max_length=64)
    type = models.SmallIntegerField()
    customer = models.ForeignKey(
        Customer, on_delete=models.SET_NULL, null=True, blank=True, related_name="group_memberships"
    )
    name = models.CharField(max_length=100, blank=True)
    join_time = models.DateTimeField(null=True, blank=True)
    join_scene = models.SmallIntegerField(default=0)

    class Meta:
        verbose_name = "群成员"
        verbose_name_plural = "群成员"
        constraints = [
            models.UniqueConstraint(fields=["group", "userid"], name="group_member_unique")
        ]

    def __str__(self) -> str:
        return f"{self.group_id}:{self.userid}"


class SyncRun(models.Model):
    """One WeCom sync: counts, where it got to (resumable) and what went wrong."""

    class Kind(models.TextChoices):
        FULL = "full", pgettext_lazy("SyncRun.Kind", "全量同步")
        RECONCILE = "reconcile", pgettext_lazy("SyncRun.Kind", "夜间对账")

    class Status(models.TextChoices):
        RUNNING = "running", pgettext_lazy("SyncRun.Status", "进行中")
        SUCCEEDED = "succeeded", pgettext_lazy("SyncRun.Status", "成功")
        FAILED = "failed", pgettext_lazy("SyncRun.Status", "失败")

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.FULL)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True
    )
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    triggered_by = models.CharField(max_length=150, blank=True)
    # {"stage": "...", "batch": n, "cursor": "..."}: where a killed run resumes.
    cursor = models.JSONField(default=dict, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    api_calls = models.IntegerField(default=0)
    seconds = models.FloatField(default=0)
    errors = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-started_at"]
        verbose_name = "同步记录"
        verbose_name_plural = "同步记录"

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} {self.status}"


class SyncSeen(models.Model):
    """Relationships a running full sync has seen in WeCom (survives a killed worker).

    At the end of the run, live relationships it did not see are ended; then
    its rows are deleted.
    """

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="+")
    customer_id = models.BigIntegerField()
    guide_id = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "customer_id", "guide_id"], name="sync_seen_unique"
            )
        ]

    def __str__(self) -> str:
        return f"run {self.run_id}: {self.guide_id} → {self.customer_id}"


class Product(models.Model):
    """The product catalogue by sku: the attributes preference tags are built on."""

    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    category = models.CharField("品类", max_length=50, blank=True)
    material = models.CharField("材质", max_length=50, blank=True)
    style = models.CharField("款式", max_length=50, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "商品"
        verbose_name_plural = "商品"

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


# An import report keeps this many problems (its counts are exact).
MAX_STORED_ERRORS = 10_000
# An import's rejected rows are kept as read (full phones included) this long, to be
# corrected and imported again (`services.order_imports_forget_rejected_cells`).
REJECTED_CELLS_DAYS = 7


IDEMPOTENCY_KEY_MAX = 100  # characters of an Idempotency-Key


class OrderImport(models.Model):
    MAX_STORED_ERRORS = MAX_STORED_ERRORS  # for templates

    """One import of order files or of a bulk API call: who, when, what, and the outcome."""

    class Status(models.TextChoices):
        QUEUED = "queued", pgettext_lazy("import", "排队中")
        RUNNING = "running", pgettext_lazy("import", "进行中")
        SUCCEEDED = "succeeded", pgettext_lazy("import", "完成")
        FAILED = "failed", pgettext_lazy("import", "失败")

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    # Why a failed import loaded nothing (a file that cannot be read, a missing report),
    # and how to say it in the reader's language (`scrm.reasons`; None for older ones).
    failure = models.TextField(blank=True)
    failure_spec = models.JSONField(null=True, blank=True)
    channel = models.CharField(max_length=16, blank=True)
    # The channels of the files when they were detected and are several ("auto")
    detected_channels = models.JSONField(default=list, blank=True)
    files = models.JSONField(default=list, blank=True)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )

    class Source(models.TextChoices):
        FILE = "file", pgettext_lazy("import source", "命令行")
        UPLOAD = "upload", pgettext_lazy("import source", "网页上传")
        API = "api", pgettext_lazy("import source", "API")
        DEMO = "demo", pgettext_lazy("import source", "演示数据")

    source = models.CharField(max_length=16, choices=Source.choices, default=Source.FILE)
    # Who ran `import_orders` (no one signs in to a command): the machine's account.
    command_user = models.CharField(max_length=150, blank=True)
    # An API push's Idempotency-Key, the pusher's own, and a digest of the body sent with
    # it: a retry (the same body) gets the first result, another body under it is refused.
    idempotency_key = models.CharField(  # noqa: DJ001 - NULL, not "": unique among keys only
        max_length=IDEMPOTENCY_KEY_MAX, null=True, blank=True
    )
    request_digest = models.CharField(max_length=64, blank=True)
    is_dry_run = models.BooleanField(default=False)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows = models.IntegerField(default=0)
    inserted = models.IntegerField(default=0)
    updated = models.IntegerField(default=0)
    unchanged = models.IntegerField(default=0)
    rejected = models.IntegerField(default=0)
    # Of the orders written: linked to a customer, unmatched, unmatched with a merge
    # suggestion waiting (as the import left them)
    matched = models.IntegerField(default=0)
    unmatched = models.IntegerField(default=0)
    suggested = models.IntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    # The rejected rows of `errors`, as the files had them, to be corrected and imported
    # again: [{"file", "header", "rows": [[row number, cells], …]}, …] (`read_cells`).
    rejected_cells = models.JSONField(default=list, blank=True)
    seconds = models.FloatField(default=0)

    class Meta:
        ordering = ["-started_at"]
        verbose_name = "订单导入"
        verbose_name_plural = "订单导入"
        constraints = [
            models.UniqueConstraint(
                fields=["imported_by", "idempotency_key"], name="order_import_key_per_user"
            )
        ]

    def __str__(self) -> str:
        return f"import #{self.pk} {self.channel} {self.status}"

    ERRORS_SHOWN = 500  # on the import's page; all of them in its downloads

    @property
    def importer_label(self) -> str:
        """Who imported: the user signed in, or the account that ran the command."""
        if self.imported_by:
            return self.imported_by.get_full_name() or self.imported_by.username
        if self.command_user:
            return gettext("命令行（%(account)s）") % {"account": self.command_user}
        return "—"

    @property
    def errors_by_row(self) -> list[dict]:
        """The rejected rows as the files have them: by file, in the order they were
        given, then row (an order's other lines are reported after the line at fault);
        each reason in the reader's language."""
        return self._errors_translated(None)

    @property
    def errors_shown(self) -> list[dict]:
        """The first ERRORS_SHOWN of `errors_by_row`."""
        return self._errors_translated(self.ERRORS_SHOWN)

    def _errors_translated(self, limit: int | None) -> list[dict]:
        place = {name: number for number, name in reversed(list(enumerate(self.files)))}
        errors = sorted(
            self.errors,
            key=lambda error: (place.get(error.get("file", ""), len(place)), error["row"]),
        )
        return [
            {**error, "reason": reason_text(error["reason_spec"])}
            if error.get("reason_spec")
            else error
            for error in errors[:limit]
        ]

    @property
    def failure_text(self) -> str:
        """`failure` in the reader's language."""
        return reason_text(self.failure_spec) if self.failure_spec else self.failure

    @property
    def rejected_cells_state(self) -> str:
        """The rejected rows kept: "kept", "too_many" (none: more than a report keeps),
        "cleared" (past REJECTED_CELLS_DAYS: gone, or about to be) or ""."""
        if not self.rejected or self.finished_at is None:
            return ""
        if self.rejected > MAX_STORED_ERRORS:
            return "too_many"
        if timezone.now() >= self.rejected_cells_until:
            return "cleared"
        return "kept" if self.rejected_cells else ""

    @property
    def rejected_cells_until(self):
        """When the rejected rows are cleared (`REJECTED_CELLS_DAYS`)."""
        return self.finished_at + timedelta(days=REJECTED_CELLS_DAYS)

    @property
    def channel_title(self) -> str:
        """天猫, 抖音, …: the channel given or detected; 有赞 + 抖音 for files of several
        (`detected_channels`); 自动识别 when their headers fitted none."""
        from contacts.order_files import CHANNEL_TITLES

        if self.channel == "auto":
            if self.detected_channels:
                return " + ".join(str(CHANNEL_TITLES[c]) for c in self.detected_channels)
            return gettext("自动识别")
        return str(CHANNEL_TITLES.get(self.channel, self.channel))


class Order(models.Model):
    """An order from one channel, keyed by (channel, channel order id).

    Linked to a customer through the buyer's identities; `customer` stays empty
    (with `unmatched_reason`) when no identity matched.
    """

    class Status(models.TextChoices):
        PAID = "paid", pgettext_lazy("Order.Status", "已支付")
        CANCELLED = "cancelled", pgettext_lazy("Order.Status", "已取消")
        REFUNDED = "refunded", pgettext_lazy("Order.Status", "已退款")
        PARTIALLY_REFUNDED = "partially_refunded", pgettext_lazy("Order.Status", "部分退款")

    channel = models.CharField(max_length=16)
    channel_order_id = models.CharField(max_length=64)
    parent_order_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices)
    paid_at = models.DateTimeField(null=True, blank=True)
    # No index of its own: order_customer_idx (customer, paid_at) serves lookups by customer.
    customer = models.ForeignKey(
        Customer,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="orders",
        db_index=False,
    )
    unmatched_reason = models.CharField(max_length=200, blank=True)
    buyer_phone_hash = models.CharField(max_length=64, blank=True)
    buyer_phone_masked = models.CharField(max_length=20, blank=True)
    buyer_unionid = models.CharField(max_length=64, blank=True)
    buyer_id = models.CharField(max_length=100, blank=True)
    buyer_name = models.CharField(max_length=100, blank=True)
    store_code = models.CharField(max_length=32, blank=True)
    guide_userid = models.CharField(max_length=64, blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    refund_amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    line_count = models.IntegerField(default=0)
    # A digest of everything imported for the order: an unchanged re-import is
    # found by comparing one column, not every field of every line.
    content_hash = models.CharField(max_length=32)
    # Which import wrote the order last: provenance, never queried by it. Without a
    # database constraint or index, as lines' order (see OrderLine.order); import
    # records are not deleted, and Django's delete would still set this to NULL.
    last_import = models.ForeignKey(
        OrderImport,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_constraint=False,
        db_index=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "订单"
        verbose_name_plural = "订单"
        constraints = [
            models.UniqueConstraint(fields=["channel", "channel_order_id"], name="order_unique")
        ]
        indexes = [
            models.Index(fields=["customer", "paid_at"], name="order_customer_idx"),
            models.Index(fields=["paid_at"], name="order_paid_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.channel_order_id}"

    @property
    def net_amount(self):
        return self.amount - self.refund_amount

    @property
    def channel_title(self) -> str:
        from contacts.order_files import ORDER_CHANNEL_NAMES

        return str(ORDER_CHANNEL_NAMES.get(self.channel, self.channel))

    @property
    def unmatched_reason_text(self) -> str:
        """`unmatched_reason` (one of `UNMATCHED_REASONS`) in the reader's language."""
        return gettext(self.unmatched_reason) if self.unmatched_reason else ""


# Why an imported order has no customer (`Order.unmatched_reason`, set by the import).
UNMATCHED_MASKED = gettext_noop("只有打码手机号，无法自动识别买家")
UNMATCHED_NO_KEY = gettext_noop("没有可识别的买家标识")
# A merge suggestion's reason, as the import writes it (`MergeSuggestion.reason_text`).
SUGGESTION_REASON = gettext_noop("打码手机号 {phone} 与姓名 {name} 只匹配到这一位客户")


class OrderLine(models.Model):
    """One line of an order: what was bought and what was paid for it."""

    # No index of its own: order_line_unique (order, line_no) serves lookups by order.
    # No database constraint either: lines are written by the order import alone
    # (contacts.order_import), in the transaction that writes their orders and
    # with the ids it returns, and orders are never deleted but through Django,
    # which deletes their lines first. Checked row by row, the constraint cost a
    # million-line import 9.4 s, twice what writing the lines costs.
    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, related_name="lines", db_index=False, db_constraint=False
    )
    line_no = models.SmallIntegerField()
    sku = models.CharField(max_length=64)
    product_name = models.CharField(max_length=200, blank=True)
    category = models.CharField(max_length=50, blank=True)
    material = models.CharField(max_length=50, blank=True)
    style = models.CharField(max_length=50, blank=True)
    quantity = models.IntegerField()
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)
    line_amount = models.DecimalField(max_digits=12, decimal_places=2)
    refund_amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    # The export gave the line a category, material or style: those it gave are kept.
    # Otherwise all three are the product catalogue's, where it has them, or else
    # were guessed from the product name (order_import.LINE_ATTRIBUTES).
    attributes_from_export = models.BooleanField(default=True, db_default=True)

    class Meta:
        verbose_name = "订单行"
        verbose_name_plural = "订单行"
        constraints = [
            models.UniqueConstraint(fields=["order", "line_no"], name="order_line_unique")
        ]

    def __str__(self) -> str:
        return f"{self.order_id}#{self.line_no} {self.sku}"


class MergeSuggestion(models.Model):
    """An order whose buyer probably is a known customer, for an operator to confirm.

    Made when a masked phone (138****5601) and the buyer's name fit exactly one
    known customer; never applied automatically.
    """

    class Status(models.TextChoices):
        PENDING = "pending", pgettext_lazy("MergeSuggestion.Status", "待确认")
        CONFIRMED = "confirmed", pgettext_lazy("MergeSuggestion.Status", "已确认")
        REJECTED = "rejected", pgettext_lazy("MergeSuggestion.Status", "已拒绝")

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="merge_suggestions")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    # What confirming changed, so that it can be undone exactly: the order's reason for
    # being unmatched, the identities the binding added, the suggestions it rejected.
    undo = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "合并建议"
        verbose_name_plural = "合并建议"
        constraints = [
            models.UniqueConstraint(fields=["order", "customer"], name="merge_suggestion_unique")
        ]

    def __str__(self) -> str:
        return f"order {self.order_id} → customer {self.customer_id} ({self.status})"

    @property
    def reason_text(self) -> str:
        """The reason in the reader's language (as stored, if the order's buyer has
        changed since)."""
        order = self.order
        fields = {"phone": order.buyer_phone_masked, "name": order.buyer_name}
        if self.reason != SUGGESTION_REASON.format(**fields):
            return self.reason
        return gettext(SUGGESTION_REASON).format(**fields)


class CustomerMerge(models.Model):
    """One merge of two customer records into one, with what moved, so it can be undone."""

    kept = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+")
    absorbed = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+")
    # {"identities": [...ids], "orders": [...], "relationships": [...], "group_members": [...],
    #  "absorbed_was_member": bool}
    moved = models.JSONField(default=dict)
    merged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    merged_at = models.DateTimeField(auto_now_add=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-merged_at"]
        verbose_name = "客户合并"
        verbose_name_plural = "客户合并"

    def __str__(self) -> str:
        return f"{self.absorbed_id} → {self.kept_id}"


class OrderBinding(models.Model):
    """A guide bound an order number to a customer they follow (the chat sidebar, the
    API), or an operator put an unmatched order on a customer: who, when, and what it
    changed, so that an operator can see it and undo it."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="bindings")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    guide = models.ForeignKey(Guide, on_delete=models.SET_NULL, null=True, related_name="+")
    # who bound it: the guide's account, or the operator who put an unmatched order on
    # the customer (`order_assign`; no guide then)
    bound_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    bound_at = models.DateTimeField(default=timezone.now)
    # As merge_suggestions_decide keeps it: the order's customer and unmatched reason
    # before, the identities the binding added, the suggestions it rejected.
    undo = models.JSONField(default=dict)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-bound_at", "-id"]
        verbose_name = "订单绑定"
        verbose_name_plural = "订单绑定"

    def __str__(self) -> str:
        return f"order {self.order_id} → customer {self.customer_id}"


class CustomerFacts(models.Model):
    """Each customer's purchase and membership summary: what tag rules, SOP triggers and
    dashboards read instead of scanning orders (refreshed by `contacts.facts`).

    Purchase days follow DESIGN.md ("Words"): distinct Asia/Shanghai days with at
    least one paid, not fully refunded order. Shares count purchased lines (not
    fully refunded); the dominant value is the one with the most lines.
    """

    customer = models.OneToOneField(
        Customer, on_delete=models.CASCADE, primary_key=True, related_name="facts"
    )
    purchase_days = models.IntegerField("购买天数", default=0)
    orders = models.IntegerField("订单数", default=0)
    lines = models.IntegerField("商品行数", default=0)
    net_revenue = models.DecimalField("净销售额", max_digits=12, decimal_places=2, default=0)
    # What the purchased lines brought (before order-level postage and discounts):
    # the base of revenue shares by category, material and style.
    line_revenue = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    avg_order_value = models.DecimalField(
        "客单价", max_digits=12, decimal_places=2, null=True, blank=True
    )
    first_purchase_on = models.DateField("首次购买", null=True, blank=True)
    last_purchase_on = models.DateField("最近购买", null=True, blank=True)
    median_interval_days = models.FloatField("购买间隔中位数（天）", null=True, blank=True)
    channels = ArrayField(models.CharField(max_length=16), default=list, blank=True)
    top_category = models.CharField(max_length=50, blank=True)
    top_category_share = models.FloatField(null=True, blank=True)
    top_material = models.CharField(max_length=50, blank=True)
    top_material_share = models.FloatField(null=True, blank=True)
    top_style = models.CharField(max_length=50, blank=True)
    top_style_share = models.FloatField(null=True, blank=True)
    is_member = models.BooleanField(default=False)
    joined_at = models.DateTimeField(null=True, blank=True)
    guide_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    store_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    in_group = models.BooleanField("在客户群中", default=False)
    # Written by analytics' BG/NBD + Gamma-Gamma fit (facts_predictions_store), so tags
    # and SOP can use them without reading analytics.
    predicted_purchases_90d = models.FloatField("预计 90 天购买天数", null=True, blank=True)
    probability_alive = models.FloatField("活跃概率", null=True, blank=True)
    predicted_ltv_12m = models.DecimalField(
        "预测 12 个月 LTV", max_digits=12, decimal_places=2, null=True, blank=True
    )
    predicted_at = models.DateTimeField(null=True, blank=True)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "客户购买概况"
        verbose_name_plural = "客户购买概况"
        indexes = [
            GinIndex(fields=["guide_ids"], name="facts_guides_gin"),
            GinIndex(fields=["store_ids"], name="facts_stores_gin"),
            GinIndex(fields=["channels"], name="facts_channels_gin"),
        ]

    def __str__(self) -> str:
        return f"facts of {self.customer_id}"


class CustomerPurchaseDay(models.Model):
    """One purchase day of one customer (DESIGN.md, "Purchase day"): windowed rules,
    cohorts and repurchase rates count these rows."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    orders = models.IntegerField()
    net_revenue = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        verbose_name = "购买日"
        verbose_name_plural = "购买日"
        constraints = [
            models.UniqueConstraint(fields=["customer", "day"], name="purchase_day_unique")
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.day}"


class CustomerAttributeShare(models.Model):
    """How many purchased lines (and how much net revenue) of a customer carry one
    category, material or style: what preference rules and tags are built on."""

    class Kind(models.TextChoices):
        CATEGORY = "category", pgettext_lazy("CustomerAttributeShare.Kind", "品类")
        MATERIAL = "material", pgettext_lazy("CustomerAttributeShare.Kind", "材质")
        STYLE = "style", pgettext_lazy("CustomerAttributeShare.Kind", "款式")

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    value = models.CharField(max_length=50)
    lines = models.IntegerField()
    net_revenue = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        verbose_name = "商品属性占比"
        verbose_name_plural = "商品属性占比"
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "kind", "value"], name="attribute_share_unique"
            )
        ]
        indexes = [models.Index(fields=["kind", "value"], name="attribute_share_value_idx")]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.kind}={self.value}: {self.lines}"


class CustomerFactsPending(models.Model):
    """Customers whose facts must be refreshed: written in the same transaction as the
    change (import, merge, callback, sync), consumed by the refresh task, so nothing is
    lost when a worker dies."""

    customer_id = models.BigIntegerField(primary_key=True)
    marked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "待刷新客户概况"
        verbose_name_plural = "待刷新客户概况"

    def __str__(self) -> str:
        return str(self.customer_id)


class CustomerGroupEvent(models.Model):
    """A member joining or leaving a customer group: the group's growth and churn.

    Written by the sync writer in the statements that change the member list (members
    inserted: joined, at WeCom's join_time; members deleted: left, when we learnt it),
    whether a full sync or a callback's refresh of the group made the change."""

    class Kind(models.TextChoices):
        JOINED = "joined", pgettext_lazy("CustomerGroupEvent.Kind", "入群")
        LEFT = "left", pgettext_lazy("CustomerGroupEvent.Kind", "退群")

    class Source(models.TextChoices):
        SYNC = "sync", pgettext_lazy("CustomerGroupEvent.Source", "同步")
        CALLBACK = "callback", pgettext_lazy("CustomerGroupEvent.Source", "回调")

    group = models.ForeignKey(
        CustomerGroup, on_delete=models.CASCADE, related_name="events", db_index=False
    )  # indexed with `at` below
    userid = models.CharField(max_length=64)  # external_userid, or a staff userid
    type = models.SmallIntegerField(default=2)  # WeCom's member type: 1 staff, 2 external
    customer = models.ForeignKey(
        Customer, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    at = models.DateTimeField()
    source = models.CharField(max_length=16, choices=Source.choices)

    class Meta:
        verbose_name = "群成员变动"
        verbose_name_plural = "群成员变动"
        indexes = [
            models.Index(fields=["group", "at"], name="group_event_group_idx"),
            models.Index(fields=["at"], name="group_event_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.group_id}:{self.userid} {self.kind} @ {self.at:%Y-%m-%d %H:%M}"
