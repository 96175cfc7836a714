"""Create the four role groups with their permissions.

Permissions are created here rather than left to post_migrate, so that the
groups get them in the same migration run on a fresh database.
"""

from django.db import migrations

PERMISSIONS = {
    "view_console": "可查看运营后台（全品牌数据）",
    "change_console": "可在运营后台修改数据",
    "use_guide_app": "可使用导购任务页（仅本人客户）",
    "change_report_recipients": "可修改报告接收人",
}

ROLES = {
    "operator": ["view_console", "change_console", "change_report_recipients"],
    "manager": ["view_console", "change_report_recipients"],
    "guide": ["use_guide_app"],
    "admin": ["view_console", "change_console", "change_report_recipients"],
}


def create_roles(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="scrm", model="access")
    permissions = {}
    for codename, name in PERMISSIONS.items():
        permissions[codename], _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
    for role, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(*(permissions[codename] for codename in codenames))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("scrm", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
