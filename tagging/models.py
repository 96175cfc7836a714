from datetime import timedelta

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import pgettext_lazy


class TagGroup(models.Model):
    """A family of tags operators think of together (材质偏好, 生命周期, RFM 分层, …)."""

    name = models.CharField("名称", max_length=30, unique=True)
    # Built-in groups are computed by a system segment (tagging.system); their tags
    # are mutually exclusive per customer.
    system_key = models.CharField(max_length=80, blank=True, db_index=True)
    order = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["order", "id"]
        verbose_name = "标签组"
        verbose_name_plural = "标签组"

    def __str__(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        """The name in the reader's language: a built-in group's is translated."""
        from tagging.system import group_label

        return group_label(self.system_key, self.name)


class Tag(models.Model):
    """A label a customer carries. Where it comes from decides who may change it: by
    hand (manual), by its rule (rule), by a system segment (system), or from WeCom's corp
    tag library (wecom: read-only here, guides set them in WeCom)."""

    class Source(models.TextChoices):
        MANUAL = "manual", pgettext_lazy("Tag.Source", "手动")
        RULE = "rule", pgettext_lazy("Tag.Source", "规则")
        SYSTEM = "system", pgettext_lazy("Tag.Source", "系统")
        WECOM = "wecom", pgettext_lazy("Tag.Source", "企业微信")

    group = models.ForeignKey(TagGroup, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField("名称", max_length=30)
    color = models.CharField("颜色", max_length=7, default="#1677ff")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.MANUAL)
    description = models.CharField("说明", max_length=200, blank=True)
    # The corp tag this tag is pushed to (rule and system tags) or mirrors (wecom).
    wecom_tag_id = models.CharField(max_length=64, blank=True, db_index=True)
    order = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["group__order", "order", "id"]
        verbose_name = "标签"
        verbose_name_plural = "标签"
        constraints = [models.UniqueConstraint(fields=["group", "name"], name="tag_unique")]

    def __str__(self) -> str:
        return f"{self.group.name}:{self.name}"

    @property
    def label(self) -> str:
        """The name in the reader's language: built-in tags are named in Chinese, as
        WeCom shows them, and translated here (tagging.system)."""
        from tagging.system import tag_label

        if self.source != self.Source.SYSTEM:
            return self.name
        return tag_label(self.group.system_key, self.name)

    @property
    def description_label(self) -> str:
        from tagging.system import description_label

        if self.source != self.Source.SYSTEM:
            return self.description
        return description_label(self.group.system_key, self.description)

    @property
    def is_pushed_to_wecom(self) -> bool:
        return self.source in (self.Source.RULE, self.Source.SYSTEM)


class TagRule(models.Model):
    """A rule that gives its tag to every customer matching a condition (tagging.rules
    defines the JSON condition language)."""

    tag = models.OneToOneField(Tag, on_delete=models.CASCADE, related_name="rule")
    condition = models.JSONField()
    is_active = models.BooleanField("启用", default=True)
    # Kept by every evaluation: how many customers carry the tag, and when it ran.
    audience = models.IntegerField(default=0)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "标签规则"
        verbose_name_plural = "标签规则"

    def __str__(self) -> str:
        return f"rule for {self.tag}"


class CustomerTag(models.Model):
    """A tag a customer carries now. History is in CustomerTagEvent."""

    customer = models.ForeignKey("contacts.Customer", on_delete=models.CASCADE, related_name="+")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="assignments")
    added_at = models.DateTimeField()

    class Meta:
        verbose_name = "客户标签"
        verbose_name_plural = "客户标签"
        constraints = [
            models.UniqueConstraint(fields=["tag", "customer"], name="customer_tag_unique")
        ]
        indexes = [models.Index(fields=["customer"], name="customer_tag_customer_idx")]

    def __str__(self) -> str:
        return f"{self.customer_id} · {self.tag_id}"


class CustomerTagEvent(models.Model):
    """One tag added to or removed from one customer: when, and by what (a rule, a system
    segment, an operator's hand, a WeCom sync)."""

    class Action(models.TextChoices):
        ADDED = "added", pgettext_lazy("CustomerTagEvent.Action", "添加")
        REMOVED = "removed", pgettext_lazy("CustomerTagEvent.Action", "移除")

    class Cause(models.TextChoices):
        RULE = "rule", pgettext_lazy("CustomerTagEvent.Cause", "规则")
        SYSTEM = "system", pgettext_lazy("CustomerTagEvent.Cause", "系统分层")
        MANUAL = "manual", pgettext_lazy("CustomerTagEvent.Cause", "手动")
        SYNC = "sync", pgettext_lazy("CustomerTagEvent.Cause", "企业微信同步")
        MERGE = "merge", pgettext_lazy("CustomerTagEvent.Cause", "客户合并")

    customer = models.ForeignKey("contacts.Customer", on_delete=models.CASCADE, related_name="+")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=8, choices=Action.choices)
    cause = models.CharField(max_length=8, choices=Cause.choices)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    at = models.DateTimeField()

    class Meta:
        verbose_name = "标签变更"
        verbose_name_plural = "标签变更"
        indexes = [
            models.Index(fields=["customer", "-at"], name="tag_event_customer_idx"),
            models.Index(fields=["tag", "-at"], name="tag_event_tag_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.tag_id} → {self.customer_id}"


class RetagPending(models.Model):
    """Customers whose tags must be re-evaluated (their facts or tags changed), consumed
    in batches by the incremental retag; written in the transaction of the change."""

    customer_id = models.BigIntegerField(primary_key=True)
    marked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "待重算标签客户"
        verbose_name_plural = "待重算标签客户"

    def __str__(self) -> str:
        return str(self.customer_id)


class TagPushPending(models.Model):
    """Customers whose rule and system tags changed and must be pushed to WeCom
    (mark_tag on each live relationship); removed once pushed, so a push resumes."""

    customer_id = models.BigIntegerField(primary_key=True)
    marked_at = models.DateTimeField(auto_now_add=True)
    attempts = models.IntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = "待推送标签客户"
        verbose_name_plural = "待推送标签客户"

    def __str__(self) -> str:
        return str(self.customer_id)


class SystemTagSettings(models.Model):
    """The thresholds of the built-in segments, editable by operators (one row)."""

    values = models.JSONField(default=dict, blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "系统标签设置"
        verbose_name_plural = "系统标签设置"

    def __str__(self) -> str:
        return "system tag settings"


class TagMergeMove(models.Model):
    """Manual tags a customer merge moved, so undoing the merge moves them back exactly."""

    merge = models.OneToOneField(
        "contacts.CustomerMerge", on_delete=models.CASCADE, related_name="+"
    )
    assignment_ids = models.JSONField(default=list)
    dropped = models.JSONField(default=list)  # [tag_id, added_at] the kept customer had already

    class Meta:
        verbose_name = "合并移动的标签"
        verbose_name_plural = "合并移动的标签"

    def __str__(self) -> str:
        return f"merge {self.merge_id}"


class BulkTagging(models.Model):
    """A manual tag added by a worker to every customer a list's filters select, or such
    an addition undone (docs/BULK_TAGGING.md)."""

    class Source(models.TextChoices):
        CUSTOMERS = "customers", pgettext_lazy("BulkTagging.Source", "客户列表")
        TAG = "tag", pgettext_lazy("BulkTagging.Source", "标签页")
        UNDO = "undo", pgettext_lazy("BulkTagging.Source", "撤销")

    class Status(models.TextChoices):
        QUEUED = "queued", pgettext_lazy("BulkTagging.Status", "排队中")
        RUNNING = "running", pgettext_lazy("BulkTagging.Status", "进行中")
        SUCCEEDED = "succeeded", pgettext_lazy("BulkTagging.Status", "完成")
        FAILED = "failed", pgettext_lazy("BulkTagging.Status", "失败")

    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="bulk_taggings")
    source = models.CharField(max_length=16, choices=Source.choices)
    query = models.TextField(blank=True)  # the list's query string: its filters
    # An undo names the tagging it undoes; a tagging is undone at most once.
    undoes = models.OneToOneField(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="undone_by"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    language = models.CharField(max_length=16)  # a failure's words, as the page was shown
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total = models.IntegerField(null=True, blank=True)  # customers to go through
    done = models.IntegerField(default=0)  # gone through so far
    changed = models.IntegerField(default=0)  # of them: newly tagged (or untagged by an undo)
    failure = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Also the `added_at` of every tag it adds and the `at` of its events: what an undo finds.
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "批量打标签"
        verbose_name_plural = "批量打标签"
        indexes = [models.Index(fields=["tag", "-created_at"], name="bulk_tagging_tag_idx")]

    def __str__(self) -> str:
        return f"bulk tagging #{self.pk} {self.source} {self.status}"

    # Still queued or running this long after it was asked for, it never will finish: its
    # worker was killed past the time limit, and the task is not delivered again.
    INTERRUPTED_AFTER = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 600)

    @property
    def is_active(self) -> bool:
        """Queued or going on: its page follows it."""
        running = self.status in (self.Status.QUEUED, self.Status.RUNNING)
        return running and not self.is_interrupted

    @property
    def is_interrupted(self) -> bool:
        """Its worker was killed: what it committed stays (and may be undone)."""
        running = self.status in (self.Status.QUEUED, self.Status.RUNNING)
        return running and self.created_at < timezone.now() - self.INTERRUPTED_AFTER

    @property
    def undoable(self) -> bool:
        """Finished having added tags, and not undone yet (`bulk.bulk_tagging_undo`)."""
        return (
            self.source != self.Source.UNDO
            and not self.is_active
            and self.started_at is not None
            and getattr(self, "undone_by", None) is None
        )

    @property
    def list_url(self) -> str:
        """The list whose filters chose the customers, filtered as it was."""
        if self.source == self.Source.CUSTOMERS:
            path = reverse("customers")
        else:
            path = reverse("tag_detail", args=[self.tag_id])
        return f"{path}?{self.query}" if self.query else path
