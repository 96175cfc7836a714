"""The English catalogue is whole: every message makemessages found has a translation,
and none is a fuzzy guess (makemessages guesses from a similar message, often wrongly:
退群 became "Refund"); and msgfmt, which `make setup` runs, compiles it."""

import re
import subprocess
from pathlib import Path

CATALOGUE = Path(__file__).resolve().parents[2] / "locale" / "en" / "LC_MESSAGES" / "django.po"


def _entries(text: str):
    for block in text.split("\n\n"):
        lines = [line for line in block.strip().splitlines() if not line.startswith("#~")]
        if not any(line.startswith("msgid ") for line in lines):
            continue  # an obsolete entry
        flags = " ".join(line for line in lines if line.startswith("#,"))
        fields, name = {}, None
        for line in lines:
            start = re.match(r"(msgid|msgid_plural|msgstr(?:\[\d\])?) (\".*\")$", line)
            if start:
                name = start.group(1)
                fields[name] = start.group(2)[1:-1]
            elif line.startswith('"') and name:
                fields[name] += line[1:-1]
        yield fields, flags


def test_every_message_is_translated_and_none_is_fuzzy():
    untranslated, fuzzy = [], []
    for fields, flags in _entries(CATALOGUE.read_text(encoding="utf-8")):
        if not fields["msgid"]:
            continue  # the header
        if "fuzzy" in flags:
            fuzzy.append(fields["msgid"])
        strings = [value for key, value in fields.items() if key.startswith("msgstr")]
        if not all(strings):
            untranslated.append(fields["msgid"])
    assert untranslated == [] and fuzzy == []


def test_msgfmt_compiles_the_catalogue():
    checked = subprocess.run(
        ["msgfmt", "--check", "-o", "/dev/null", str(CATALOGUE)],  # noqa: S607 - gettext
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


CJK = re.compile(r"[\u4e00-\u9fff]")


def test_every_model_choice_reads_in_english():
    """A choice label that is not marked for translation stays Chinese in the English
    UI (the callback events' 已处理, a task's 一对一消息): every one is marked."""
    from django.apps import apps
    from django.utils import translation

    chinese = []
    with translation.override("en"):
        for model in apps.get_models():
            for field in model._meta.get_fields():
                for _value, label in getattr(field, "flatchoices", None) or []:
                    if CJK.search(str(label)):
                        chinese.append(f"{model.__name__}.{field.name}: {label}")
    assert chinese == []
