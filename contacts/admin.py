from django.contrib import admin

from contacts.models import (
    CorpTag,
    CorpTagGroup,
    Customer,
    CustomerGroup,
    CustomerGroupMember,
    CustomerIdentity,
    CustomerMerge,
    Guide,
    MergeSuggestion,
    Order,
    OrderImport,
    OrderLine,
    Product,
    Relationship,
    RelationshipEvent,
    Store,
    SyncRun,
    SyncSeen,
)


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "city", "wecom_department_id")
    search_fields = ("code", "name", "city")


@admin.register(Guide)
class GuideAdmin(admin.ModelAdmin):
    list_display = ("wecom_userid", "name", "store", "user", "is_active")
    list_filter = ("is_active", "store")
    search_fields = ("wecom_userid", "name")
    raw_id_fields = ("user",)


class IdentityInline(admin.TabularInline):
    model = CustomerIdentity
    extra = 0
    readonly_fields = ("kind", "value", "display")


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "external_userid", "is_member", "joined_at")
    list_filter = ("is_member", "type")
    search_fields = ("name", "external_userid")
    raw_id_fields = ("merged_into",)
    inlines = [IdentityInline]
    show_full_result_count = False  # no COUNT(*) over millions of rows per page


@admin.register(Relationship)
class RelationshipAdmin(admin.ModelAdmin):
    list_display = ("customer", "guide", "added_at", "state", "is_active", "ended_by")
    list_filter = ("is_active", "ended_by")
    raw_id_fields = ("customer", "guide")
    show_full_result_count = False


@admin.register(RelationshipEvent)
class RelationshipEventAdmin(admin.ModelAdmin):
    list_display = ("relationship", "kind", "source", "occurred_at")
    list_filter = ("kind", "source")
    raw_id_fields = ("relationship",)
    show_full_result_count = False


@admin.register(CustomerIdentity)
class CustomerIdentityAdmin(admin.ModelAdmin):
    list_display = ("customer", "kind", "display", "created_at")
    list_filter = ("kind",)
    raw_id_fields = ("customer",)
    show_full_result_count = False


class CorpTagInline(admin.TabularInline):
    model = CorpTag
    extra = 0


@admin.register(CorpTagGroup)
class CorpTagGroupAdmin(admin.ModelAdmin):
    list_display = ("name", "wecom_group_id", "order", "is_deleted")
    inlines = [CorpTagInline]


@admin.register(CorpTag)
class CorpTagAdmin(admin.ModelAdmin):
    list_display = ("name", "group", "wecom_tag_id", "is_deleted")
    list_filter = ("group", "is_deleted")


@admin.register(CustomerGroup)
class CustomerGroupAdmin(admin.ModelAdmin):
    list_display = ("name", "chat_id", "owner_userid", "member_count", "is_dismissed")
    search_fields = ("name", "chat_id", "owner_userid")


@admin.register(CustomerGroupMember)
class CustomerGroupMemberAdmin(admin.ModelAdmin):
    list_display = ("group", "userid", "type", "customer", "join_time")
    raw_id_fields = ("group", "customer")
    show_full_result_count = False


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "started_at", "finished_at", "api_calls", "seconds")
    list_filter = ("kind", "status")


@admin.register(SyncSeen)
class SyncSeenAdmin(admin.ModelAdmin):
    list_display = ("run", "customer_id", "guide_id")
    show_full_result_count = False


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "category", "material", "style")
    search_fields = ("sku", "name")


@admin.register(OrderImport)
class OrderImportAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "source",
        "channel",
        "status",
        "started_at",
        "inserted",
        "updated",
        "rejected",
    )
    list_filter = ("source", "status", "channel")
    exclude = ("rejected_cells",)  # whole rows with full phones: downloaded by operators only


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("channel", "channel_order_id", "status", "paid_at", "customer", "amount")
    list_filter = ("channel", "status")
    search_fields = ("channel_order_id", "parent_order_id")
    raw_id_fields = ("customer", "last_import")
    inlines = [OrderLineInline]
    show_full_result_count = False


@admin.register(OrderLine)
class OrderLineAdmin(admin.ModelAdmin):
    list_display = ("order", "line_no", "sku", "quantity", "line_amount")
    raw_id_fields = ("order",)
    show_full_result_count = False


@admin.register(MergeSuggestion)
class MergeSuggestionAdmin(admin.ModelAdmin):
    list_display = ("order", "customer", "status", "created_at")
    list_filter = ("status",)
    raw_id_fields = ("order", "customer", "decided_by")


@admin.register(CustomerMerge)
class CustomerMergeAdmin(admin.ModelAdmin):
    list_display = ("kept", "absorbed", "merged_at", "undone_at")
    raw_id_fields = ("kept", "absorbed", "merged_by", "undone_by")
