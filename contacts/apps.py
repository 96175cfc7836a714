from django.apps import AppConfig


class ContactsConfig(AppConfig):
    name = "contacts"
    verbose_name = "客户"

    def ready(self) -> None:
        from contacts import services, views
        from scrm.exports import register_export_source
        from scrm.models import Export
        from scrm.wecom.events import register

        register_export_source(Export.Kind.CUSTOMERS, views.customer_export_table)

        contact = "change_external_contact"
        for change in (
            "add_external_contact",
            "edit_external_contact",
            "add_half_external_contact",
        ):
            register(event=contact, change_type=change, handler=services.contact_refresh, order=10)
        for change in ("del_external_contact", "del_follow_user"):
            register(event=contact, change_type=change, handler=services.relationship_end, order=10)
        register(
            event=contact,
            change_type="transfer_fail",
            handler=services.relationship_transfer_failed,
            order=10,
        )
        for change in ("delete_user", "update_user"):
            register(
                event="change_contact", change_type=change, handler=services.guide_left, order=10
            )
        register(
            event="change_external_chat", change_type="*", handler=services.group_refresh, order=10
        )
        register(
            event="change_external_tag",
            change_type="*",
            handler=services.corp_tags_refresh,
            order=10,
        )
