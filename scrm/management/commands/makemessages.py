"""Django's makemessages, also collecting the message ids of `Reason("…")` (scrm.reasons)."""

from django.core.management.commands import makemessages


class Command(makemessages.Command):
    xgettext_options = [*makemessages.Command.xgettext_options, "--keyword=Reason"]
