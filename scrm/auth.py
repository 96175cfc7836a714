"""Sign-in and permissions: Django's, except for a guide who has left.

A guide's account is theirs while WeCom says they work here: the sync marks the
guide inactive (`Guide.is_active`) when their WeCom account is disabled, gone or
loses customer contact, and WeCom's callback of a member deleted or disabled does
at once (`contacts.services.guide_left`). From then on the account signs nobody in, its sessions end
and its API tokens carry no permission, though the user row stays as it was (the
access comes back by itself if WeCom lists them again).
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

BACKEND = "scrm.auth.Backend"


def has_left(user) -> bool:
    guide = getattr(user, "guide", None)  # the reverse one-to-one; None when not a guide
    return guide is not None and not guide.is_active


class Backend(ModelBackend):
    def get_user(self, user_id):
        """The session's user with their guide, if any, in one query (`has_left` reads it)."""
        user = get_user_model()._default_manager.select_related("guide").filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None

    def user_can_authenticate(self, user) -> bool:
        return super().user_can_authenticate(user) and not has_left(user)

    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        if has_left(user_obj):
            return set()
        return super().get_all_permissions(user_obj, obj)
