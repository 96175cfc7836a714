"""Admins connect the corp: the permission to see and change the WeCom secrets, given
to the admin group (superusers have it anyway)."""

from django.db import migrations

CODENAME, NAME = "connect_wecom", "可连接企业微信（查看和修改密钥）"


def grant(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="scrm", model="access")
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type, codename=CODENAME, defaults={"name": NAME}
    )
    group, _ = Group.objects.get_or_create(name="admin")
    group.permissions.add(permission)


def revoke(apps, schema_editor):
    apps.get_model("auth", "Permission").objects.filter(
        content_type__app_label="scrm", codename=CODENAME
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("scrm", "0004_wecom_setup")]

    operations = [
        migrations.AlterModelOptions(
            name="access",
            options={
                "default_permissions": (),
                "managed": False,
                "permissions": [
                    ("view_console", "可查看运营后台（全品牌数据）"),
                    ("change_console", "可在运营后台修改数据"),
                    ("use_guide_app", "可使用导购任务页（仅本人客户）"),
                    ("change_report_recipients", "可修改报告接收人"),
                    (CODENAME, NAME),
                ],
            },
        ),
        migrations.RunPython(grant, revoke),
    ]
