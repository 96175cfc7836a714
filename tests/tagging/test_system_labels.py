"""The built-in tags are named in Chinese (WeCom shows them to guides as pushed); pages
show them, their groups and their descriptions in the reader's language."""

import re
from datetime import UTC, datetime

import pytest
from django.urls import reverse
from django.utils import translation

from tagging.evaluation import evaluate
from tagging.models import Tag, TagGroup
from tagging.system import DEFAULTS, SEGMENTS

CJK = re.compile(r"[\u4e00-\u9fff]")
NOW = datetime(2026, 7, 1, 4, tzinfo=UTC)
# Settings whose bands differ from the defaults: band names are made from them.
CHANGED = {**DEFAULTS, "frequency_bands": [1, 3, 10], "cycle_bounds": [7, 14, 45]}


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+", text)


@pytest.mark.parametrize("settings", [DEFAULTS, CHANGED], ids=["defaults", "changed"])
def test_every_fixed_or_banded_tag_name_reads_in_english_with_its_numbers(settings):
    for segment in SEGMENTS:
        if segment.tags is None:
            continue
        for name in segment.tags(settings):
            with translation.override("en"):
                label = Tag(name=name, source=Tag.Source.SYSTEM, group=_group(segment.key)).label
            assert not CJK.search(label), (segment.key, name, label)
            # The same band: 3-4次 is 3–4×, 30天内 is Within 30 days.
            assert _numbers(label) == _numbers(name), (segment.key, name, label)
            with translation.override("zh-hans"):
                chinese = Tag(name=name, source=Tag.Source.SYSTEM, group=_group(segment.key))
                assert chinese.label == name


def _group(key: str) -> TagGroup:
    return TagGroup(name=key, system_key=key)


def test_groups_and_descriptions_of_built_in_segments_read_in_english():
    with translation.override("en"):
        for segment in SEGMENTS:
            group = TagGroup(name=segment.group, system_key=segment.key)
            tag = Tag(group=group, source=Tag.Source.SYSTEM, description=segment.description)
            assert not CJK.search(group.label), segment.key
            assert not CJK.search(tag.description_label), segment.key


def test_tags_named_by_the_data_or_by_people_keep_their_names():
    with translation.override("en"):
        material = Tag(name="冰丝", source=Tag.Source.SYSTEM, group=_group("material"))
        assert material.label == "冰丝"
        # A name that no band makes (from an old setting of another shape) is kept.
        odd = Tag(name="3至4次", source=Tag.Source.SYSTEM, group=_group("frequency"))
        assert odd.label == "3至4次"
        manual_group = TagGroup(name="运营标记")
        manual = Tag(name="潜客", source=Tag.Source.MANUAL, group=manual_group, description="手写")
        assert (manual_group.label, manual.label, manual.description_label) == (
            "运营标记",
            "潜客",
            "手写",
        )


@pytest.mark.django_db
def test_tag_pages_name_built_in_tags_in_english(client_for, operator, tag_people):
    evaluate(customer_ids=None, now=NOW)
    a = tag_people["A"]
    prospect = Tag.objects.get(group__system_key="lifecycle", name="潜客")
    assert Tag.objects.filter(group__system_key="frequency", name="2次").exists()
    client = client_for(operator)
    english = {"HTTP_ACCEPT_LANGUAGE": "en"}
    listing = client.get(reverse("tags"), **english).content.decode()
    assert "Lifecycle" in listing and "Prospect" in listing and "Purchase frequency" in listing
    assert "2×" in listing and "Prospect: never bought" in listing
    assert "潜客" not in listing and "生命周期" not in listing and "2次" not in listing
    detail = client.get(reverse("tag_detail", args=[prospect.pk]), **english).content.decode()
    assert "Prospect" in detail and "Lifecycle" in detail and "潜客" not in detail
    fragment = client.get(reverse("customer_tags", args=[a.pk]), **english).content.decode()
    assert "Lifecycle" in fragment and "生命周期" not in fragment
    # In Chinese the pages show the names WeCom shows.
    chinese = client.get(reverse("tags")).content.decode()
    assert "潜客" in chinese and "生命周期" in chinese and "2次" in chinese
