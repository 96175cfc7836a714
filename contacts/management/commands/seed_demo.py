"""Demo logins: an operator, a manager, two guides and an admin.

Idempotent: running it again resets the demo passwords and links, nothing
else. Guides are linked to the guide records synced from WeCom (the bundled
emulator in the demo); if a guide record is missing it is created so that the
login works before the first sync.
"""

import os

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from django.db import transaction

from contacts.models import Guide

DEMO_USERS = [
    # username, role, display name, guide userid
    ("operator", "operator", "运营 王敏", None),
    ("manager", "manager", "私域负责人 李强", None),
    ("guide1", "guide", None, "guide0001"),
    ("guide2", "guide", None, "guide0002"),
]


class Command(BaseCommand):
    help = "Create or reset the demo logins (password from DEMO_PASSWORD)."

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        password = os.environ.get("DEMO_PASSWORD", "scrm-demo-2026")
        for username, role, display_name, guide_userid in DEMO_USERS:
            user, _ = User.objects.get_or_create(username=username)
            user.set_password(password)
            user.is_staff = False
            if guide_userid:
                guide, _ = Guide.objects.get_or_create(
                    wecom_userid=guide_userid, defaults={"name": username}
                )
                Guide.objects.filter(user=user).exclude(pk=guide.pk).update(user=None)
                guide.user = user
                guide.save(update_fields=["user"])
                display_name = f"导购 {guide.name}"
            user.first_name = display_name or ""
            user.save()
            user.groups.set([Group.objects.get(name=role)])
        admin, _ = User.objects.get_or_create(username="admin")
        admin.is_staff = admin.is_superuser = True
        admin.set_password(password)
        admin.save()
        self.stdout.write(f"demo logins ready (password: {password})")
