"""The emulator's WeCom APIs and simulated user actions, over HTTP through the platform's gateway.

Each errcode path has a test; callbacks are caught by a small receiver that
decrypts them as WeCom's receiver would, and two tests follow a group event and
a tag event through our own callback endpoint and worker.
"""

import random
import re
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import xmltodict
from django.conf import settings
from django.core.management.base import CommandError
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.exceptions import APILimitedException

from contacts.models import CorpTag, CustomerGroup, CustomerGroupMember
from scrm.models import CallbackEvent
from scrm.wecom.emulator import Config, WeComEmulator
from scrm.wecom.gateway import Credentials, WeComError, WeComGateway
from tests.helpers import wait_for

# The gateway reads the setup page's credentials (none saved here: the settings' are used).
pytestmark = pytest.mark.django_db

BEIJING = timezone(timedelta(hours=8))
CORP_ID = Config().corp_id
LEVEL = "et0003g00000000000000000000000000"  # 客户等级: 普通, 银卡, 金卡
INTEREST = "et0003g00000000000000000000000001"  # 兴趣: 冰丝, 棉, 基础款, 主题款
ORDINARY = "et0003t00000000000000000000000000"  # 普通
SILVER = "et0003t00000000000000000000000001"  # 银卡
GOLD = "et0003t00000000000000000000000002"  # 金卡
BASIC = "et0003t01000000000000000000000002"  # 基础款
FIRST_CHAT, SECOND_CHAT = "wr0003000000000000000000000000", "wr0003000000000000000000000001"


def at(*moment: int) -> float:
    return datetime(*moment, tzinfo=BEIJING).timestamp()


class Clock:
    """The emulator's clock, frozen, moved by hand."""

    def __init__(self, now: float) -> None:
        self.t = now

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(emulator) -> Clock:
    emulator.clock = Clock(at(2026, 3, 10, 12))
    return emulator.clock


@pytest.fixture
def gateway(emulator) -> WeComGateway:
    return WeComGateway.from_settings()


@pytest.fixture
def agent(emulator) -> WeComGateway:
    """The self-built app's gateway (its secret, not 客户联系's)."""
    return WeComGateway(Credentials(settings.WECOM_CORP_ID, settings.WECOM_AGENT_SECRET))


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        query = parse_qs(urlparse(self.path).query)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        config = Config()
        crypto = WeChatCrypto(config.callback_token, config.callback_aes_key, config.corp_id)
        plain = crypto.decrypt_message(
            body, query["msg_signature"][0], query["timestamp"][0], query["nonce"][0]
        )
        self.server.received.append(plain if isinstance(plain, str) else plain.decode())
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def callbacks(emulator):
    """The decrypted XML of every callback the emulator delivers during the test."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []
    # a short poll interval: shutdown() waits for one
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    emulator.config.callback_url = f"http://127.0.0.1:{server.server_port}/wecom/callback/"
    yield server.received
    server.shutdown()
    server.server_close()


def event(plain: str) -> dict:
    return dict(xmltodict.parse(plain)["xml"])


def post(gateway: WeComGateway, api: str, data: dict) -> dict:
    return gateway.call("post", f"externalcontact/{api}", data=data)


def errcode(gateway: WeComGateway, method: str, api: str, **kwargs) -> int:
    with pytest.raises(WeComError) as raised:
        gateway.call(method, api, **kwargs)
    return raised.value.errcode


def customers_of(emulator, userid: str) -> list[str]:
    return [f["external_userid"] for f in emulator.data.follows[userid]]


def customer_not_of(emulator, userid: str) -> str:
    return next(
        e
        for e in emulator.data.customers
        if all(f["userid"] != userid for f in emulator.data.follows_of(e))
    )


def follow_of(gateway, external_userid: str, userid: str) -> dict:
    contact = gateway.external_contact_get(external_userid)
    return next(f for f in contact["follow_user"] if f["userid"] == userid)


def add_member(emulator, userid: str, *, follows: list | None = None) -> None:
    emulator.data.users.append({"userid": userid, "name": "新人", "department": [100], "status": 1})
    if follows is not None:
        emulator.data.follows[userid] = follows


# -- tokens and permissions --------------------------------------------------------


def test_tokens_expire_on_the_emulators_clock(gateway, emulator, clock):
    emulator.config.token_ttl = 600
    gateway.follow_user_list()
    clock.t += 599
    gateway.follow_user_list()
    assert emulator.stats()["gettoken"] == 1
    clock.t += 2  # expired: 42001, refreshed, retried
    assert len(gateway.follow_user_list()) == 12
    assert emulator.stats()["gettoken"] == 2
    assert emulator.stats()["externalcontact/get_follow_user_list"] == 4


def test_the_agent_token_calls_contact_apis_only_while_its_app_is_listed(agent, emulator):
    assert len(agent.follow_user_list()) == 12  # the app is in 客户联系's 可调用应用
    emulator.config.agent_can_use_contacts = False
    with pytest.raises(WeComError) as raised:
        agent.follow_user_list()
    assert (raised.value.errcode, raised.value.api) == (
        48002,
        "externalcontact/get_follow_user_list",
    )


def test_a_contact_token_cannot_send_app_messages(gateway):
    data = {"touser": "guide0001", "msgtype": "text", "agentid": 1000002, "text": {"content": "x"}}
    assert errcode(gateway, "post", "message/send", data=data) == 48002


# -- contacts ------------------------------------------------------------------------


def test_user_simplelist_and_get(gateway, emulator):
    everyone = gateway.call(
        "get", "user/simplelist", params={"department_id": 1, "fetch_child": 1}
    )["userlist"]
    assert len(everyone) == 12
    assert everyone[0] == {"userid": "guide0001", "name": "彭涛瑶", "department": [100]}
    assert gateway.call("get", "user/simplelist", params={"department_id": 1})["userlist"] == []
    store = gateway.call("get", "user/simplelist", params={"department_id": 100})["userlist"]
    assert [u["userid"] for u in store] == [f"guide{n:04d}" for n in range(1, 13)]
    user = gateway.call("get", "user/get", params={"userid": "guide0001"})
    assert user == {
        "errcode": 0,
        "errmsg": "ok",
        "userid": "guide0001",
        "name": "彭涛瑶",
        "department": [100],
        "status": 1,
    }
    assert errcode(gateway, "get", "user/get", params={"userid": "nobody"}) == 60111
    assert errcode(gateway, "get", "user/simplelist", params={"department_id": 999}) == 60123


# -- customers -------------------------------------------------------------------------


def test_list_returns_every_customer_of_a_member(gateway, emulator):
    listed = gateway.call("get", "externalcontact/list", params={"userid": "guide0001"})
    assert listed["external_userid"] == customers_of(emulator, "guide0001")
    assert len(listed["external_userid"]) == 40
    # wechatpy's own method reaches the same path
    assert gateway.client.external_contact.list("guide0001") == listed


@pytest.mark.parametrize(
    ("userid", "code"),
    [("nobody", 60111), ("trainee", 84074), ("guide0001", 84061)],
    ids=["unknown member", "member without 客户联系", "member without customers"],
)
def test_list_errors(gateway, emulator, userid, code):
    add_member(emulator, "trainee")  # in the address book, no 客户联系 permission
    emulator.data.follows["guide0001"] = []
    assert errcode(gateway, "get", "externalcontact/list", params={"userid": userid}) == code


def test_get_pages_follow_user_at_500_and_the_gateway_merges_the_pages(gateway, emulator):
    external_userid = "wm000300000000000000000000000000"
    for number in range(1100):
        userid = f"bulk{number:04d}"
        follow = {
            "external_userid": external_userid,
            "userid": userid,
            "remark": "",
            "description": "",
            "createtime": 1700000000,
            "tag_id": [],
            "oper_userid": userid,
            "add_way": 202,
        }
        add_member(emulator, userid, follows=[follow])
    params = {"external_userid": external_userid}
    first = gateway.call("get", "externalcontact/get", params=params)
    assert len(first["follow_user"]) == 500 and first["next_cursor"]
    merged = gateway.external_contact_get(external_userid)
    expected = [f["userid"] for f in emulator.data.follows_of(external_userid)]
    assert [f["userid"] for f in merged["follow_user"]] == expected
    assert len(expected) == 1103  # three guides and the 1,100 added
    assert emulator.stats()["externalcontact/get"] == 1 + 3  # 500 + 500 + 103
    bad = {**params, "cursor": "not-a-cursor"}
    assert errcode(gateway, "get", "externalcontact/get", params=bad) == 50100


def test_get_names_each_tag_and_has_no_cursor_on_a_single_page(gateway, emulator):
    external_userid = customers_of(emulator, "guide0001")[0]
    reply = gateway.call("get", "externalcontact/get", params={"external_userid": external_userid})
    assert "next_cursor" not in reply
    gateway.mark_tag(userid="guide0001", external_userid=external_userid, add=[GOLD], remove=[])
    tags = follow_of(gateway, external_userid, "guide0001")["tags"]
    assert {"group_name": "客户等级", "tag_name": "金卡", "tag_id": GOLD, "type": 1} in tags


def test_remark_replaces_the_fields_sent_and_raises_no_callback(gateway, emulator, callbacks):
    wechat = next(
        e for e in customers_of(emulator, "guide0001") if emulator.data.customers[e]["type"] == 1
    )
    post(
        gateway,
        "remark",
        {
            "userid": "guide0001",
            "external_userid": wechat,
            "remark": "王" * 20,
            "description": "喜欢冰丝",
            "remark_company": "某某服饰",
            "remark_mobiles": ["13800000001", "13800000002"],
        },
    )
    info = follow_of(gateway, wechat, "guide0001")
    assert (info["remark"], info["description"], info["remark_corp_name"]) == (
        "王" * 20,
        "喜欢冰丝",
        "某某服饰",
    )
    assert info["remark_mobiles"] == ["13800000001", "13800000002"]
    post(
        gateway,
        "remark",
        {"userid": "guide0001", "external_userid": wechat, "remark_mobiles": ["13900000003"]},
    )
    assert follow_of(gateway, wechat, "guide0001")["remark_mobiles"] == ["13900000003"]
    post(
        gateway,
        "remark",
        {"userid": "guide0001", "external_userid": wechat, "remark_mobiles": [""]},
    )
    info = follow_of(gateway, wechat, "guide0001")
    assert "remark_mobiles" not in info and info["remark"] == "王" * 20  # the rest is kept
    # remark_company is for WeChat customers only; a WeCom user's company is their corp's
    wecom_user = next(e for e, c in emulator.data.customers.items() if c["type"] == 2)
    userid = emulator.data.follows_of(wecom_user)[0]["userid"]
    post(
        gateway,
        "remark",
        {"userid": userid, "external_userid": wecom_user, "remark_company": "别家"},
    )
    assert "remark_corp_name" not in follow_of(gateway, wecom_user, userid)
    assert callbacks == []


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"remark": "字" * 21}, 40058),
        ({"description": "字" * 151}, 40058),
        ({"remark_company": "字" * 21}, 40058),
        ({"remark": "", "description": "", "remark_mobiles": []}, 40058),
        ({"external_userid": "wmnobody"}, 40096),
        ({"userid": "guide0002"}, 84061),
    ],
    ids=["remark", "description", "remark_company", "all empty", "unknown customer", "no relation"],
)
def test_remark_errors(gateway, emulator, change, code):
    external_userid = next(
        e
        for e in customers_of(emulator, "guide0001")
        if e not in customers_of(emulator, "guide0002")
    )
    data = {"userid": "guide0001", "external_userid": external_userid, "remark": "x", **change}
    assert errcode(gateway, "post", "externalcontact/remark", data=data) == code


# -- corp tags ---------------------------------------------------------------------------


def test_corp_tag_list_filters_by_tag_or_by_group(gateway):
    everything = post(gateway, "get_corp_tag_list", {})["tag_group"]
    assert [g["group_name"] for g in everything] == ["客户等级", "兴趣"]
    assert "deleted" not in everything[0] and "deleted" not in everything[0]["tag"][0]
    by_tag = post(gateway, "get_corp_tag_list", {"tag_id": [BASIC, ORDINARY]})["tag_group"]
    assert [
        (g["group_name"], g["deleted"], [(t["name"], t["deleted"]) for t in g["tag"]])
        for g in by_tag
    ] == [("兴趣", False, [("基础款", False)]), ("客户等级", False, [("普通", False)])]
    # group_id wins over tag_id
    by_group = post(gateway, "get_corp_tag_list", {"group_id": [INTEREST], "tag_id": [ORDINARY]})
    assert [(g["group_id"], g["deleted"]) for g in by_group["tag_group"]] == [(INTEREST, False)]
    assert [t["name"] for t in by_group["tag_group"][0]["tag"]] == [
        "冰丝",
        "棉",
        "基础款",
        "主题款",
    ]
    # wechatpy's get_corp_tag_list(tag_ids) sends tag_id
    reply = gateway.client.external_contact.get_corp_tag_list([ORDINARY])
    assert reply["tag_group"][0]["tag"] == [
        {"id": ORDINARY, "name": "普通", "create_time": 1700000000, "order": 0, "deleted": False}
    ]


def test_add_corp_tag_creates_a_group_or_adds_to_one(gateway, emulator, clock, callbacks):
    created = post(
        gateway,
        "add_corp_tag",
        {
            "group_name": "季节",
            "order": 5,
            "tag": [{"name": "春"}, {"name": "夏", "order": 2}, {"name": "春"}],
        },
    )["tag_group"]
    assert re.fullmatch(r"et0003g\d{26}", created["group_id"])
    assert (created["group_name"], created["order"], created["create_time"]) == (
        "季节",
        5,
        int(clock.t),
    )
    assert [(t["name"], t["order"]) for t in created["tag"]] == [("春", 0), ("夏", 2)]  # 春 once
    assert all(re.fullmatch(r"et0003t\d{26}", t["id"]) for t in created["tag"])
    # the same group name: the tags go into that group, its order unchanged
    again = post(
        gateway, "add_corp_tag", {"group_name": "季节", "order": 9, "tag": [{"name": "秋"}]}
    )
    assert (again["tag_group"]["group_id"], again["tag_group"]["order"]) == (created["group_id"], 5)
    # by group_id: group_name is ignored
    post(
        gateway,
        "add_corp_tag",
        {"group_id": created["group_id"], "group_name": "别的", "tag": [{"name": "冬" * 30}]},
    )
    library = post(gateway, "get_corp_tag_list", {"group_id": [created["group_id"]]})["tag_group"]
    assert library[0]["group_name"] == "季节"
    assert [t["name"] for t in library[0]["tag"]] == ["春", "夏", "秋", "冬" * 30]
    gateway.client.external_contact.add_corp_tag(None, "颜色", None, [{"name": "红"}])
    names = [g["group_name"] for g in post(gateway, "get_corp_tag_list", {})["tag_group"]]
    assert names == ["客户等级", "兴趣", "季节", "颜色"]
    assert callbacks == []  # API changes raise no callbacks


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"group_name": "季节", "tag": []}, 40058),
        ({"group_name": "季节", "tag": [{"name": "字" * 31}]}, 40072),
        ({"group_name": "字" * 31, "tag": [{"name": "春"}]}, 40072),
        ({"group_name": "季节", "tag": [{"name": "春", "order": -1}]}, 40058),
        ({"group_name": "客户等级", "tag": [{"name": "金卡"}]}, 40071),
        ({"group_id": LEVEL, "tag": [{"name": "新的"}, {"name": "银卡"}]}, 40071),
        ({"group_id": "etnosuchgroup", "tag": [{"name": "春"}]}, 40068),
    ],
    ids=[
        "no tags",
        "long tag name",
        "long group name",
        "order",
        "name in group",
        "name in group by id",
        "unknown group",
    ],
)
def test_add_corp_tag_errors(gateway, body, code):
    assert errcode(gateway, "post", "externalcontact/add_corp_tag", data=body) == code


def test_a_corp_has_at_most_3000_corp_tags(gateway):
    names = [{"name": f"标签{n}"} for n in range(3000 - 7)]  # the 7 generated and these
    post(gateway, "add_corp_tag", {"group_name": "批量", "tag": names})
    library = post(gateway, "get_corp_tag_list", {})["tag_group"]
    assert sum(len(group["tag"]) for group in library) == WeComEmulator.CORP_TAG_LIMIT == 3000
    one_more = {"group_name": "再来", "tag": [{"name": "一个"}]}
    assert errcode(gateway, "post", "externalcontact/add_corp_tag", data=one_more) == 40126


def test_edit_corp_tag_renames_a_tag_or_a_group(gateway):
    post(gateway, "edit_corp_tag", {"id": ORDINARY, "name": "普卡", "order": 7})
    post(gateway, "edit_corp_tag", {"id": INTEREST, "name": "偏好"})
    post(gateway, "edit_corp_tag", {"id": SILVER, "name": "棉"})  # 棉 is another group's
    library = post(gateway, "get_corp_tag_list", {})["tag_group"]
    assert library[0]["tag"][0] == {
        "id": ORDINARY,
        "name": "普卡",
        "create_time": 1700000000,
        "order": 7,
    }
    assert [t["name"] for t in library[0]["tag"]] == ["普卡", "棉", "金卡"]
    assert library[1]["group_name"] == "偏好"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"id": ORDINARY, "name": "银卡"}, 40071),
        ({"id": INTEREST, "name": "客户等级"}, 40071),
        ({"id": ORDINARY, "name": "字" * 31}, 40072),
        ({"id": "etnosuchtag", "name": "x"}, 40068),
    ],
    ids=["a sibling tag's name", "another group's name", "long name", "unknown id"],
)
def test_edit_corp_tag_errors(gateway, body, code):
    assert errcode(gateway, "post", "externalcontact/edit_corp_tag", data=body) == code


def test_del_corp_tag_takes_tags_off_relations_and_empties_groups_away(
    gateway, emulator, callbacks
):
    tagged = [
        (userid, f["external_userid"])
        for userid, follows in emulator.data.follows.items()
        for f in follows
        if ORDINARY in f["tag_id"]
    ]
    assert len(tagged) > 1
    post(gateway, "del_corp_tag", {"tag_id": [ORDINARY]})
    userid, external_userid = tagged[0]
    tags = follow_of(gateway, external_userid, userid)["tags"]
    assert ORDINARY not in [t["tag_id"] for t in tags]
    assert not any(ORDINARY in f["tag_id"] for fs in emulator.data.follows.values() for f in fs)
    # the group's last tags: the group goes with them
    post(gateway, "del_corp_tag", {"tag_id": [SILVER, GOLD]})
    assert [g["group_name"] for g in post(gateway, "get_corp_tag_list", {})["tag_group"]] == [
        "兴趣"
    ]
    post(gateway, "del_corp_tag", {"group_id": [INTEREST]})
    assert post(gateway, "get_corp_tag_list", {})["tag_group"] == []
    # asked by id, deleted ones still answer, marked deleted
    by_tag = post(gateway, "get_corp_tag_list", {"tag_id": [ORDINARY]})["tag_group"]
    assert by_tag == [
        {
            "group_id": LEVEL,
            "group_name": "客户等级",
            "create_time": 1700000000,
            "order": 0,
            "deleted": True,
            "tag": [
                {
                    "id": ORDINARY,
                    "name": "普通",
                    "create_time": 1700000000,
                    "order": 0,
                    "deleted": True,
                }
            ],
        }
    ]
    by_group = post(gateway, "get_corp_tag_list", {"group_id": [INTEREST]})["tag_group"]
    assert by_group[0]["deleted"] is True
    assert [(t["name"], t["deleted"]) for t in by_group[0]["tag"]] == [
        ("冰丝", True),
        ("棉", True),
        ("基础款", True),
        ("主题款", True),
    ]
    assert callbacks == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, 40058),
        ({"tag_id": [], "group_id": []}, 40058),
        ({"tag_id": [ORDINARY, "etnosuch"]}, 40068),
        ({"group_id": ["etnosuch"]}, 40068),
    ],
    ids=["nothing", "empty lists", "unknown tag", "unknown group"],
)
def test_del_corp_tag_errors(gateway, emulator, body, code):
    assert errcode(gateway, "post", "externalcontact/del_corp_tag", data=body) == code
    assert len(emulator.data.tag_groups[0]["tag"]) == 3  # nothing deleted


def test_mark_tag_edits_that_relations_tags_only(gateway, emulator):
    external_userid = next(
        e for e in customers_of(emulator, "guide0001") if len(emulator.data.follows_of(e)) > 1
    )
    gateway.mark_tag(
        userid="guide0001", external_userid=external_userid, add=[GOLD, BASIC], remove=[]
    )
    gateway.mark_tag(userid="guide0001", external_userid=external_userid, add=[], remove=[BASIC])
    for follow in gateway.external_contact_get(external_userid)["follow_user"]:
        tag_ids = [t["tag_id"] for t in follow["tags"]]
        if follow["userid"] == "guide0001":
            assert GOLD in tag_ids and BASIC not in tag_ids
        else:
            original = emulator.data.follows_of(external_userid)
            assert tag_ids == next(f["tag_id"] for f in original if f["userid"] == follow["userid"])


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"add_tag": [], "remove_tag": []}, 40058),
        ({"add_tag": ["etnosuchtag"]}, 40068),
        ({"external_userid": "wmnobody"}, 40096),
        ({"userid": "nobody"}, 60111),
        ({"userid": "guide0002"}, 84061),
    ],
    ids=["nothing to do", "unknown tag", "unknown customer", "unknown member", "no relation"],
)
def test_mark_tag_errors(gateway, emulator, body, code):
    external_userid = next(
        e
        for e in customers_of(emulator, "guide0001")
        if e not in customers_of(emulator, "guide0002")
    )
    data = {"userid": "guide0001", "external_userid": external_userid, "add_tag": [GOLD], **body}
    assert errcode(gateway, "post", "externalcontact/mark_tag", data=data) == code


# -- groups ------------------------------------------------------------------------------


def test_groupchat_list_filters_by_status_and_owner(gateway, emulator):
    emulator.data.group_status[SECOND_CHAT] = 1  # its owner resigned

    def listed(**body) -> list[dict]:
        return post(gateway, "groupchat/list", {"limit": 100, **body})["group_chat_list"]

    assert listed() == [{"chat_id": FIRST_CHAT, "status": 0}, {"chat_id": SECOND_CHAT, "status": 1}]
    assert listed(status_filter=1) == [{"chat_id": SECOND_CHAT, "status": 1}]
    assert listed(status_filter=3) == []
    assert listed(owner_filter={"userid_list": ["guide0004"]}) == [
        {"chat_id": FIRST_CHAT, "status": 0}
    ]
    assert listed(owner_filter={"userid_list": ["guide0001"]}) == []
    owners = {"limit": 100, "owner_filter": {"userid_list": [f"u{n}" for n in range(101)]}}
    assert errcode(gateway, "post", "externalcontact/groupchat/list", data=owners) == 40058
    bad_status = {"limit": 100, "status_filter": 4}
    assert errcode(gateway, "post", "externalcontact/groupchat/list", data=bad_status) == 40058


def test_groupchat_list_needs_an_owner_filter_past_1000_follow_users(gateway, emulator):
    assert WeComEmulator.GROUPCHAT_LIST_UNFILTERED_MEMBERS == 1000
    for number in range(1000 - 12):
        add_member(emulator, f"extra{number:04d}", follows=[])
    assert len(post(gateway, "groupchat/list", {"limit": 10})["group_chat_list"]) == 2
    add_member(emulator, "extra9999", follows=[])  # the 1,001st
    assert errcode(gateway, "post", "externalcontact/groupchat/list", data={"limit": 10}) == 81017
    mine = post(
        gateway, "groupchat/list", {"limit": 10, "owner_filter": {"userid_list": ["guide0004"]}}
    )
    assert mine["group_chat_list"] == [{"chat_id": FIRST_CHAT, "status": 0}]


# -- mass messages -------------------------------------------------------------------------


def _single(
    emulator, external_userids: list[str], sender: str = "guide0001", content: str = "新品上市"
) -> dict:
    body = {
        "chat_type": "single",
        "external_userid": external_userids,
        "text": {"content": content},
    }
    return body | ({"sender": sender} if sender else {})


def _send_result(gateway, msgid: str, userid: str = "guide0001", **extra) -> list[dict]:
    return post(gateway, "get_groupmsg_send_result", {"msgid": msgid, "userid": userid, **extra})[
        "send_list"
    ]


def test_a_mass_message_with_a_sender_waits_for_that_sender(gateway, emulator, clock, callbacks):
    mine = customers_of(emulator, "guide0001")[:3]
    other = customer_not_of(emulator, "guide0001")
    reply = post(gateway, "add_msg_template", _single(emulator, [*mine, other, "wmnobody"]))
    assert reply["fail_list"] == [other, "wmnobody"]  # not this sender's, and unknown
    msgid = reply["msgid"]
    assert re.fullmatch(r"msg0003\d{21}", msgid)
    tasks = post(gateway, "get_groupmsg_task", {"msgid": msgid})
    assert (
        tasks["task_list"] == [{"userid": "guide0001", "status": 0}] and tasks["next_cursor"] == ""
    )
    assert _send_result(gateway, msgid) == [
        {"external_userid": e, "userid": "guide0001", "status": 0} for e in mine
    ]
    window = {"chat_type": "single", "start_time": int(clock.t) - 60, "end_time": int(clock.t)}
    assert post(gateway, "get_groupmsg_list_v2", window)["group_msg_list"] == [
        {
            "msgid": msgid,
            "create_time": str(int(clock.t)),
            "create_type": 0,
            "text": {"content": "新品上市"},
        }
    ]
    clock.t += 30
    assert emulator.guide_confirms_send(msgid, "guide0001") == 0  # no callback
    sent = int(clock.t)
    tasks = post(gateway, "get_groupmsg_task", {"msgid": msgid})["task_list"]
    assert tasks == [{"userid": "guide0001", "status": 2, "send_time": sent}]
    assert _send_result(gateway, msgid) == [
        {"external_userid": e, "userid": "guide0001", "status": 1, "send_time": sent} for e in mine
    ]
    assert callbacks == []


def test_without_a_sender_each_customer_goes_to_the_guide_who_added_them_last(gateway, emulator):
    customers = ["wm000300000000000000000000000000", "wm000300000000000000000000000001"]
    last = {
        e: max(emulator.data.follows_of(e), key=lambda f: f["createtime"])["userid"]
        for e in customers
    }
    assert last["wm000300000000000000000000000000"] == "guide0007"  # of guide0007, 0011, 0012
    msgid = post(gateway, "add_msg_template", _single(emulator, customers, sender=""))["msgid"]
    tasks = post(gateway, "get_groupmsg_task", {"msgid": msgid})["task_list"]
    assert tasks == [{"userid": u, "status": 0} for u in dict.fromkeys(last.values())]
    for userid in set(last.values()):
        assert _send_result(gateway, msgid, userid) == [
            {"external_userid": e, "userid": userid, "status": 0}
            for e, u in last.items()
            if u == userid
        ]


def test_confirming_sends_to_friends_within_their_quota(gateway, emulator, clock):
    emulator.config.quota_policy = "daily"
    friend, gone, full = customers_of(emulator, "guide0001")[:3]
    earlier = post(gateway, "add_msg_template", _single(emulator, [full]))["msgid"]
    emulator.guide_confirms_send(earlier, "guide0001")  # `full` got today's message
    msgid = post(gateway, "add_msg_template", _single(emulator, [friend, gone, full]))["msgid"]
    emulator.customer_deletes_guide(gone, "guide0001")
    clock.t += 5
    emulator.guide_confirms_send(msgid, "guide0001")
    assert _send_result(gateway, msgid) == [
        {"external_userid": friend, "userid": "guide0001", "status": 1, "send_time": int(clock.t)},
        {"external_userid": gone, "userid": "guide0001", "status": 2},
        {"external_userid": full, "userid": "guide0001", "status": 3},
    ]
    assert emulator.data.received[friend] == [clock.t]


@pytest.mark.parametrize(
    ("policy", "start", "cap", "next_period"),
    [
        ("month_days", at(2026, 2, 1, 9), 28, at(2026, 3, 1, 0, 0, 1)),
        ("four_per_month", at(2026, 3, 5, 9), 4, at(2026, 4, 1, 9)),
        ("daily", at(2026, 3, 5, 9), 1, at(2026, 3, 6, 0, 0, 1)),
        ("weekly", at(2026, 3, 2, 9), 7, at(2026, 3, 9, 9)),  # Monday to Monday
    ],
)
def test_receive_quota_policies(gateway, emulator, clock, policy, start, cap, next_period):
    emulator.config.quota_policy = policy
    clock.t = start
    customer = customers_of(emulator, "guide0001")[0]

    def send() -> int:
        msgid = post(gateway, "add_msg_template", _single(emulator, [customer]))["msgid"]
        emulator.guide_confirms_send(msgid, "guide0001")
        clock.t += 60
        return _send_result(gateway, msgid)[0]["status"]

    assert [send() for _ in range(cap + 1)] == [1] * cap + [3]
    clock.t = next_period
    assert send() == 1


def test_add_msg_template_takes_the_documented_maximums(gateway, emulator):
    customer = customers_of(emulator, "guide0001")[0]
    unknown = [f"wm{n:030d}" for n in range(9_999)]
    body = _single(emulator, [customer, *unknown], content="字" * 1333 + "a")  # 4,000 bytes
    body["attachments"] = [{"msgtype": "image", "image": {"media_id": f"M{n}"}} for n in range(9)]
    reply = post(gateway, "add_msg_template", body)
    assert len(reply["fail_list"]) == 9_999 and reply["msgid"]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"chat_type": "broadcast"}, 40058),
        ({"external_userid": [f"wm{n:030d}" for n in range(10_001)]}, 40058),
        ({"external_userid": [], "sender": ""}, 40058),
        ({"chat_type": "group", "sender": ""}, 40058),
        ({"chat_type": "group", "chat_id_list": [f"wr{n:028d}" for n in range(2_001)]}, 40058),
        ({"text": {}, "attachments": []}, 40058),
        ({"attachments": [{"msgtype": "image", "image": {"media_id": "M"}}] * 10}, 40058),
        ({"attachments": [{"msgtype": "image", "link": {"title": "t", "url": "u"}}]}, 41065),
        ({"text": {"content": "字" * 1334}}, 40058),
        ({"external_userid": ["wmnobody"]}, 41048),
        ({"sender": "nobody"}, 60111),
    ],
    ids=[
        "chat_type",
        "10,001 customers",
        "no customers, no sender",
        "group without sender",
        "2,001 chats",
        "no content",
        "10 attachments",
        "msgtype and payload differ",
        "text over 4,000 bytes",
        "nobody to send to",
        "unknown sender",
    ],
)
def test_add_msg_template_errors(gateway, emulator, change, code):
    body = _single(emulator, customers_of(emulator, "guide0001")[:1]) | change
    assert errcode(gateway, "post", "externalcontact/add_msg_template", data=body) == code
    assert emulator.data.group_msgs == {}


def test_a_group_mass_message_lists_sent_groups_only(gateway, emulator, clock):
    body = {
        "chat_type": "group",
        "sender": "guide0004",
        "chat_id_list": [FIRST_CHAT, SECOND_CHAT, "wrnosuchchat"],
        "text": {"content": "群福利"},
    }
    reply = post(gateway, "add_msg_template", body)
    assert reply["fail_list"] == [SECOND_CHAT, "wrnosuchchat"]  # guide0007's, and unknown
    msgid = reply["msgid"]
    assert _send_result(gateway, msgid, "guide0004") == []  # unsent groups are not listed
    emulator.guide_confirms_send(msgid, "guide0004")
    assert _send_result(gateway, msgid, "guide0004") == [
        {"chat_id": FIRST_CHAT, "userid": "guide0004", "status": 1, "send_time": int(clock.t)}
    ]
    window = {"start_time": int(clock.t) - 60, "end_time": int(clock.t)}
    groups = post(gateway, "get_groupmsg_list_v2", {"chat_type": "group", **window})
    assert [m["msgid"] for m in groups["group_msg_list"]] == [msgid]
    assert (
        post(gateway, "get_groupmsg_list_v2", {"chat_type": "single", **window})["group_msg_list"]
        == []
    )


def test_groupmsg_list_v2_filters_and_pages(gateway, emulator, clock):
    customer = customers_of(emulator, "guide0001")[0]
    by_api = [
        post(gateway, "add_msg_template", _single(emulator, [customer]))["msgid"] for _ in range(50)
    ]
    by_guide = emulator.guide_creates_mass_message(
        "guide0002", customers_of(emulator, "guide0002")[:2], "我的群发"
    )
    window = {
        "chat_type": "single",
        "start_time": int(clock.t) - 31 * 86400,
        "end_time": int(clock.t),
    }
    first = post(
        gateway, "get_groupmsg_list_v2", {**window, "limit": 101}
    )  # over 100: the default 50
    assert len(first["group_msg_list"]) == 50 and first["next_cursor"]
    rest = post(gateway, "get_groupmsg_list_v2", {**window, "cursor": first["next_cursor"]})
    assert [m["msgid"] for m in first["group_msg_list"] + rest["group_msg_list"]] == [
        *by_api,
        by_guide,
    ]
    assert rest["next_cursor"] == ""
    corp = post(gateway, "get_groupmsg_list_v2", {**window, "filter_type": 0, "limit": 100})
    assert [m["msgid"] for m in corp["group_msg_list"]] == by_api
    assert all("creator" not in m for m in corp["group_msg_list"])
    members = post(gateway, "get_groupmsg_list_v2", {**window, "filter_type": 1})["group_msg_list"]
    assert members == [
        {
            "msgid": by_guide,
            "create_time": str(int(clock.t)),
            "creator": "guide0002",
            "create_type": 1,
            "text": {"content": "我的群发"},
        }
    ]
    assert [
        m["msgid"]
        for m in post(gateway, "get_groupmsg_list_v2", {**window, "creator": "guide0002"})[
            "group_msg_list"
        ]
    ] == [by_guide]
    too_long = {**window, "start_time": window["start_time"] - 1}
    assert errcode(gateway, "post", "externalcontact/get_groupmsg_list_v2", data=too_long) == 40058
    bad_filter = {**window, "filter_type": 3}
    assert (
        errcode(gateway, "post", "externalcontact/get_groupmsg_list_v2", data=bad_filter) == 40058
    )


def test_task_and_send_result_page_with_a_cursor(gateway, emulator):
    everyone = list(emulator.data.customers)
    msgid = post(gateway, "add_msg_template", _single(emulator, everyone, sender=""))["msgid"]
    tasks = post(gateway, "get_groupmsg_task", {"msgid": msgid, "limit": 1001})[
        "task_list"
    ]  # the default 500
    senders = {
        max(emulator.data.follows_of(e), key=lambda f: f["createtime"])["userid"]
        for e in everyone
        if emulator.data.follows_of(e)
    }
    assert len(tasks) == len(senders) == 12
    paged, cursor = [], ""
    while True:
        page = post(gateway, "get_groupmsg_task", {"msgid": msgid, "limit": 5, "cursor": cursor})
        paged += page["task_list"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert paged == tasks
    userid = tasks[0]["userid"]
    whole = _send_result(gateway, msgid, userid)
    pieces, cursor = [], ""
    while True:
        page = post(
            gateway,
            "get_groupmsg_send_result",
            {"msgid": msgid, "userid": userid, "limit": 7, "cursor": cursor},
        )
        pieces += page["send_list"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pieces == whole and len(whole) > 7


@pytest.mark.parametrize(
    ("api", "body", "code"),
    [
        ("get_groupmsg_task", {"msgid": "msgnosuch"}, 41047),
        ("get_groupmsg_task", {}, 41046),
        ("get_groupmsg_send_result", {"msgid": "msgnosuch", "userid": "guide0001"}, 41047),
        ("remind_groupmsg_send", {"msgid": "msgnosuch"}, 41047),
        ("cancel_groupmsg_send", {"msgid": "msgnosuch"}, 41047),
    ],
)
def test_unknown_msgid(gateway, api, body, code):
    assert errcode(gateway, "post", f"externalcontact/{api}", data=body) == code


def test_remind_at_most_three_times_in_24_hours(gateway, emulator, clock):
    msgid = post(
        gateway, "add_msg_template", _single(emulator, customers_of(emulator, "guide0001")[:1])
    )["msgid"]
    for _ in range(3):
        assert post(gateway, "remind_groupmsg_send", {"msgid": msgid}) == {
            "errcode": 0,
            "errmsg": "ok",
        }
    # straight through wechatpy: the gateway would retry 45009 with backoff, to no avail
    with pytest.raises(APILimitedException) as raised:
        gateway.client.post("externalcontact/remind_groupmsg_send", data={"msgid": msgid})
    assert raised.value.errcode == 45009
    clock.t += 86400
    assert post(gateway, "remind_groupmsg_send", {"msgid": msgid}) == {"errcode": 0, "errmsg": "ok"}


def test_a_cancelled_mass_message_is_never_sent(gateway, emulator):
    customers = customers_of(emulator, "guide0001")[:2]
    msgid = post(gateway, "add_msg_template", _single(emulator, customers))["msgid"]
    assert post(gateway, "cancel_groupmsg_send", {"msgid": msgid}) == {"errcode": 0, "errmsg": "ok"}
    emulator.guide_confirms_send(msgid, "guide0001")
    assert post(gateway, "get_groupmsg_task", {"msgid": msgid})["task_list"] == [
        {"userid": "guide0001", "status": 0}
    ]
    assert [r["status"] for r in _send_result(gateway, msgid)] == [0, 0]


def test_reads_answer_41063_while_the_message_is_dispatched(gateway, emulator, clock):
    assert Config().groupmsg_dispatch_seconds == 0  # off unless asked for
    emulator.config.groupmsg_dispatch_seconds = 2
    msgid = post(
        gateway, "add_msg_template", _single(emulator, customers_of(emulator, "guide0001")[:1])
    )["msgid"]
    task = {"msgid": msgid}
    result = {"msgid": msgid, "userid": "guide0001"}
    window = {"chat_type": "single", "start_time": int(clock.t) - 60, "end_time": int(clock.t)}
    assert errcode(gateway, "post", "externalcontact/get_groupmsg_task", data=task) == 41063
    assert (
        errcode(gateway, "post", "externalcontact/get_groupmsg_send_result", data=result) == 41063
    )
    assert errcode(gateway, "post", "externalcontact/get_groupmsg_list_v2", data=window) == 41063
    clock.t += 2
    assert post(gateway, "get_groupmsg_task", task)["task_list"] == [
        {"userid": "guide0001", "status": 0}
    ]


# -- welcome messages -------------------------------------------------------------------


def test_a_welcome_code_works_once_within_20_s(gateway, emulator, clock, callbacks):
    customer = "wmwelcome00000000000000000000001"
    assert emulator.customer_adds_guide(customer, "guide0001") == 200
    code = event(callbacks[-1])["WelcomeCode"]
    clock.t += 20
    body = {
        "welcome_code": code,
        "text": {"content": "欢迎光临"},
        "attachments": [
            {"msgtype": "link", "link": {"title": "新人礼", "url": "https://example.com/gift"}}
        ],
    }
    assert gateway.client.external_contact.send_welcome_msg(body) == {"errcode": 0, "errmsg": "ok"}
    assert emulator.welcome_messages == [
        {
            "welcome_code": code,
            "userid": "guide0001",
            "external_userid": customer,
            "text": {"content": "欢迎光临"},
            "attachments": body["attachments"],
            "sent_at": clock.t,
        }
    ]
    assert errcode(gateway, "post", "externalcontact/send_welcome_msg", data=body) == 41051
    emulator.customer_adds_guide("wmwelcome00000000000000000000002", "guide0002")
    late = event(callbacks[-1])["WelcomeCode"]
    clock.t += 21
    late_body = {**body, "welcome_code": late}
    assert errcode(gateway, "post", "externalcontact/send_welcome_msg", data=late_body) == 41050
    unknown = {**body, "welcome_code": "no-such-code"}
    assert errcode(gateway, "post", "externalcontact/send_welcome_msg", data=unknown) == 41050
    missing = {"text": {"content": "欢迎"}}
    assert errcode(gateway, "post", "externalcontact/send_welcome_msg", data=missing) == 41049
    assert len(emulator.welcome_messages) == 1


def test_a_welcome_message_needs_content(gateway, emulator, callbacks):
    emulator.customer_adds_guide("wmwelcome00000000000000000000003", "guide0001")
    code = event(callbacks[-1])["WelcomeCode"]
    empty = {"welcome_code": code, "text": {"content": ""}}
    assert errcode(gateway, "post", "externalcontact/send_welcome_msg", data=empty) == 40058
    assert (
        post(gateway, "send_welcome_msg", {"welcome_code": code, "text": {"content": "你好"}})[
            "errcode"
        ]
        == 0
    )


# -- contact ways ------------------------------------------------------------------------


def test_contact_way_add_get_update_delete(gateway, emulator):
    gateway.follow_user_list()  # a token for wechatpy's own methods
    ways = gateway.client.external_contact
    added = ways.add_contact_way(1, 2, remark="门店桌牌", state="store_table", user=["guide0001"])
    config_id = added["config_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", config_id)
    assert added["qr_code"] == f"https://wework.qpic.cn/wwpic/{config_id}/0"
    assert ways.get_contact_way(config_id)["contact_way"] == {
        "config_id": config_id,
        "type": 1,
        "scene": 2,
        "remark": "门店桌牌",
        "skip_verify": True,
        "state": "store_table",
        "user": ["guide0001"],
        "party": [],
        "is_temp": False,
        "qr_code": added["qr_code"],
    }
    ways.update_contact_way(config_id, "新备注", user=["guide0002"])
    way = ways.get_contact_way(config_id)["contact_way"]
    assert (way["remark"], way["user"], way["state"]) == ("新备注", ["guide0002"], "store_table")
    button = post(
        gateway,
        "add_contact_way",
        {"type": 2, "scene": 1, "style": 1, "user": ["guide0001"], "party": [100]},
    )
    assert "qr_code" not in button  # a mini-program button has no QR code
    post(gateway, "update_contact_way", {"config_id": button["config_id"], "party": []})
    assert (
        post(gateway, "get_contact_way", {"config_id": button["config_id"]})["contact_way"]["party"]
        == []
    )
    assert post(gateway, "del_contact_way", {"config_id": config_id}) == {
        "errcode": 0,
        "errmsg": "ok",
    }
    assert (
        errcode(gateway, "post", "externalcontact/get_contact_way", data={"config_id": config_id})
        == 41044
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"type": 1, "scene": 2, "user": ["guide0001", "guide0002"]}, 40058),
        ({"type": 1, "scene": 2, "user": []}, 40058),
        ({"type": 1, "scene": 2, "user": ["guide0001"], "party": [100]}, 40058),
        ({"type": 2, "scene": 2}, 40058),
        ({"type": 1, "scene": 2, "user": ["guide0001"], "state": "s" * 31}, 40058),
        ({"type": 1, "scene": 2, "user": ["guide0001"], "remark": "r" * 31}, 40058),
        ({"type": 1, "scene": 2, "user": ["nobody"]}, 60111),
        ({"type": 2, "scene": 2, "party": [999]}, 60123),
        ({"scene": 2, "user": ["guide0001"]}, 41037),
        ({"type": 1, "user": ["guide0001"]}, 41038),
        ({"type": 3, "scene": 2, "user": ["guide0001"]}, 41039),
        ({"type": 1, "scene": 3, "user": ["guide0001"]}, 41040),
    ],
    ids=[
        "type 1 with two users",
        "type 1 with none",
        "type 1 with a party",
        "type 2 with nobody",
        "state over 30",
        "remark over 30",
        "unknown user",
        "unknown party",
        "no type",
        "no scene",
        "bad type",
        "bad scene",
    ],
)
def test_add_contact_way_errors(gateway, emulator, body, code):
    assert errcode(gateway, "post", "externalcontact/add_contact_way", data=body) == code
    assert emulator.data.contact_ways == {}


def test_a_contact_way_has_at_most_100_members_departments_expanded(gateway, emulator):
    for number in range(100 - 12):
        add_member(emulator, f"extra{number:04d}", follows=[])
    post(gateway, "add_contact_way", {"type": 2, "scene": 2, "party": [1]})  # 100 with children
    add_member(emulator, "extra9999", follows=[])
    too_many = {"type": 2, "scene": 2, "party": [1]}
    assert errcode(gateway, "post", "externalcontact/add_contact_way", data=too_many) == 41041
    users = {"type": 2, "scene": 2, "user": [u["userid"] for u in emulator.data.users]}
    assert errcode(gateway, "post", "externalcontact/add_contact_way", data=users) == 41041


def test_the_api_adds_at_most_the_corps_limit_of_contact_ways(gateway, emulator, monkeypatch):
    assert WeComEmulator.CONTACT_WAY_LIMIT == 500_000
    monkeypatch.setattr(emulator, "CONTACT_WAY_LIMIT", 2)  # not half a million calls
    body = {"type": 1, "scene": 2, "user": ["guide0001"]}
    post(gateway, "add_contact_way", body)
    post(gateway, "add_contact_way", body)
    assert errcode(gateway, "post", "externalcontact/add_contact_way", data=body) == 41045
    temporary = post(gateway, "add_contact_way", {**body, "is_temp": True, "expires_in": 3600})
    assert (
        post(gateway, "get_contact_way", {"config_id": temporary["config_id"]})["contact_way"][
            "expires_in"
        ]
        == 3600
    )


@pytest.mark.parametrize("api", ["get_contact_way", "update_contact_way", "del_contact_way"])
def test_unknown_or_missing_config_id(gateway, api):
    assert errcode(gateway, "post", f"externalcontact/{api}", data={"config_id": "0" * 32}) == 41044
    assert errcode(gateway, "post", f"externalcontact/{api}", data={}) == 41043


def test_scanning_a_contact_way_adds_the_customer_with_its_state(
    gateway, emulator, clock, callbacks
):
    way = {"type": 2, "scene": 2, "state": "live_0618", "user": ["guide0003", "guide0005"]}
    config_id = post(gateway, "add_contact_way", way)["config_id"]
    assert emulator.customer_scans_contact_way(config_id) == 200
    assert emulator.customer_scans_contact_way(config_id, "wmscanned0000000000000000000001") == 200
    assert emulator.customer_scans_contact_way(config_id) == 200
    first, second, third = (event(plain) for plain in callbacks)
    assert [e["UserID"] for e in (first, second, third)] == ["guide0003", "guide0005", "guide0003"]
    assert (first["ChangeType"], first["State"]) == ("add_external_contact", "live_0618")
    assert re.fullmatch(r"wm0003\d{26}", first["ExternalUserID"])
    assert second["ExternalUserID"] == "wmscanned0000000000000000000001"
    follow = follow_of(gateway, first["ExternalUserID"], "guide0003")
    assert follow == {
        "userid": "guide0003",
        "remark": "",
        "description": "",
        "createtime": int(clock.t),
        "oper_userid": first["ExternalUserID"],
        "add_way": 1,
        "state": "live_0618",
        "tags": [],
    }
    welcome = {"welcome_code": first["WelcomeCode"], "text": {"content": "欢迎来到直播间"}}
    assert post(gateway, "send_welcome_msg", welcome) == {"errcode": 0, "errmsg": "ok"}
    assert emulator.welcome_messages[0]["external_userid"] == first["ExternalUserID"]


# -- app messages to staff ------------------------------------------------------------------


def test_app_messages_reach_known_members(agent, emulator):
    reply = agent.call(
        "post",
        "message/send",
        data={
            "touser": "guide0001|nobody|guide0002",
            "msgtype": "text",
            "agentid": 1000002,
            "text": {"content": "今日待办：回访 3 位客户"},
        },
    )
    assert (reply["invaliduser"], reply["invalidparty"], reply["invalidtag"]) == ("nobody", "", "")
    assert reply["msgid"]
    assert [(m["userid"], m["text"]["content"]) for m in emulator.app_messages] == [
        ("guide0001", "今日待办：回访 3 位客户"),
        ("guide0002", "今日待办：回访 3 位客户"),
    ]
    agent.client.message.send_text(1000002, "@all", "全员通知")
    assert len(emulator.app_messages) == 2 + 12
    by_party = agent.call(
        "post",
        "message/send",
        data={
            "touser": "",
            "toparty": "100|999",
            "msgtype": "text",
            "agentid": 1000002,
            "text": {"content": "门店"},
        },
    )
    assert by_party["invalidparty"] == "999"
    assert len(emulator.app_messages) == 2 + 12 + 12


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"agentid": 1000003}, 301002),
        ({"agentid": None}, 41011),
        ({"touser": "nobody"}, 81013),
        ({"touser": "", "toparty": "", "totag": ""}, 82001),
        ({"text": {"content": ""}}, 44004),
        ({"msgtype": "fax"}, 40008),
    ],
    ids=[
        "another app's agentid",
        "no agentid",
        "nobody known",
        "no recipients",
        "empty text",
        "msgtype",
    ],
)
def test_app_message_errors(agent, emulator, change, code):
    body = {"touser": "guide0001", "msgtype": "text", "agentid": 1000002, "text": {"content": "x"}}
    body = {k: v for k, v in (body | change).items() if v is not None}
    assert errcode(agent, "post", "message/send", data=body) == code
    assert emulator.app_messages == []


def test_a_member_gets_at_most_30_app_messages_a_minute(agent, emulator, clock):
    def send(content: str) -> dict:
        return agent.call(
            "post",
            "message/send",
            data={
                "touser": "guide0001",
                "msgtype": "text",
                "agentid": 1000002,
                "text": {"content": content},
            },
        )

    replies = [send(f"提醒{n}") for n in range(31)]
    assert all(r["errcode"] == 0 and r["invaliduser"] == "" for r in replies)  # dropped silently
    assert [m["text"]["content"] for m in emulator.app_messages] == [f"提醒{n}" for n in range(30)]
    clock.t += 60
    send("一分钟后")
    assert emulator.app_messages[-1]["text"]["content"] == "一分钟后"
    assert len(emulator.app_messages) == 31


# -- simulated user actions: callbacks with their own fields ----------------------------------


def test_group_events_carry_their_fields_and_change_the_group(gateway, emulator, clock, callbacks):
    chat_id = "wr0003000000000000000000000099"
    assert emulator.group_created("guide0001", "新品福利群", chat_id=chat_id) == 200
    created = event(callbacks[0])
    assert created == {
        "ToUserName": CORP_ID,
        "FromUserName": "sys",
        "CreateTime": str(int(clock.t)),
        "MsgType": "event",
        "Event": "change_external_chat",
        "ChatId": chat_id,
        "ChangeType": "create",
    }
    assert list(created)[-2:] == ["ChatId", "ChangeType"]  # WeCom's order
    before = post(gateway, "groupchat/get", {"chat_id": chat_id})["group_chat"]["member_version"]
    first, second = customers_of(emulator, "guide0001")[:2]
    clock.t += 1
    assert emulator.group_member_joins(chat_id, [first, second], join_scene=3) == 200
    joined = event(callbacks[1])
    group = post(gateway, "groupchat/get", {"chat_id": chat_id})["group_chat"]
    assert joined == {
        "ToUserName": CORP_ID,
        "FromUserName": "sys",
        "CreateTime": str(int(clock.t)),
        "MsgType": "event",
        "Event": "change_external_chat",
        "ChatId": chat_id,
        "ChangeType": "update",
        "UpdateDetail": "add_member",
        "JoinScene": "3",
        "MemChangeCnt": "2",
        "MemChangeList": {"Item": [first, second]},
        "LastMemVer": before,
        "CurMemVer": group["member_version"],
    }
    assert group["member_version"] != before
    assert (
        f"<MemChangeList><Item>{first}</Item><Item>{second}</Item></MemChangeList>" in callbacks[1]
    )
    assert "<MemChangeCnt>2</MemChangeCnt>" in callbacks[1]
    assert [m["userid"] for m in group["member_list"]] == ["guide0001", first, second]
    assert group["member_list"][1] == {
        "userid": first,
        "type": 2,
        "join_time": int(clock.t),
        "join_scene": 3,
    }
    assert emulator.group_member_leaves(chat_id, second, quit_scene=1) == 200
    left = event(callbacks[2])
    assert (left["UpdateDetail"], left["QuitScene"], left["MemChangeCnt"]) == (
        "del_member",
        "1",
        "1",
    )
    assert left["MemChangeList"] == {"Item": second} and "JoinScene" not in left
    assert left["LastMemVer"] == group["member_version"]
    members = post(gateway, "groupchat/get", {"chat_id": chat_id})["group_chat"]["member_list"]
    assert [m["userid"] for m in members] == ["guide0001", first]
    assert emulator.group_dismissed(chat_id) == 200
    assert (
        event(callbacks[3])["ChangeType"] == "dismiss" and event(callbacks[3])["ChatId"] == chat_id
    )
    assert (
        errcode(gateway, "post", "externalcontact/groupchat/get", data={"chat_id": chat_id})
        == 40050
    )
    listed = post(gateway, "groupchat/list", {"limit": 100})["group_chat_list"]
    assert [c["chat_id"] for c in listed] == [FIRST_CHAT, SECOND_CHAT]


def test_tag_events_carry_id_and_tag_type(gateway, emulator, clock, callbacks):
    assert emulator.admin_creates_tag("客户等级", "钻石卡") == 200
    diamond = next(t["id"] for t in emulator.data.tag_groups[0]["tag"] if t["name"] == "钻石卡")
    assert event(callbacks[0]) == {
        "ToUserName": CORP_ID,
        "FromUserName": "sys",
        "CreateTime": str(int(clock.t)),
        "MsgType": "event",
        "Event": "change_external_tag",
        "Id": diamond,
        "TagType": "tag",
        "ChangeType": "create",
    }
    assert emulator.admin_creates_tag("季节", "春") == 200
    season = emulator.data.tag_groups[-1]
    assert (event(callbacks[1])["Id"], event(callbacks[1])["TagType"]) == (
        season["group_id"],
        "tag_group",
    )
    assert [t["name"] for t in season["tag"]] == ["春"]
    assert emulator.admin_renames_tag(diamond, "黑卡") == 200
    assert (event(callbacks[2])["ChangeType"], event(callbacks[2])["Id"]) == ("update", diamond)
    assert emulator.admin_renames_tag(INTEREST, "偏好") == 200
    assert event(callbacks[3])["TagType"] == "tag_group"
    gateway.mark_tag(
        userid="guide0001",
        external_userid=customers_of(emulator, "guide0001")[0],
        add=[BASIC],
        remove=[],
    )
    assert emulator.admin_deletes_tag(INTEREST) == 200
    deleted = event(callbacks[4])
    assert (deleted["ChangeType"], deleted["Id"], deleted["TagType"]) == (
        "delete",
        INTEREST,
        "tag_group",
    )
    assert len(callbacks) == 5  # the group's tags went with it, without callbacks of their own
    library = post(gateway, "get_corp_tag_list", {})["tag_group"]
    assert [(g["group_name"], [t["name"] for t in g["tag"]]) for g in library] == [
        ("客户等级", ["普通", "银卡", "金卡", "黑卡"]),
        ("季节", ["春"]),
    ]
    assert not any(BASIC in f["tag_id"] for fs in emulator.data.follows.values() for f in fs)


def test_tag_edits_in_the_client_and_failed_transfers_are_contact_events(
    gateway, emulator, callbacks
):
    customer = customers_of(emulator, "guide0001")[0]
    assert emulator.guide_edits_tags(customer, "guide0001", add=[GOLD], remove=[]) == 200
    edited = event(callbacks[0])
    assert (edited["ChangeType"], edited["UserID"], edited["ExternalUserID"]) == (
        "edit_external_contact",
        "guide0001",
        customer,
    )
    tags = follow_of(gateway, customer, "guide0001")["tags"]
    assert {"group_name": "客户等级", "tag_name": "金卡", "tag_id": GOLD, "type": 1} in tags
    assert emulator.transfer_fails(customer, "guide0002", "customer_limit_exceed") == 200
    failed = event(callbacks[1])
    assert (
        failed["ChangeType"],
        failed["UserID"],
        failed["ExternalUserID"],
        failed["FailReason"],
    ) == (
        "transfer_fail",
        "guide0002",
        customer,
        "customer_limit_exceed",
    )
    assert emulator.data.transfers == [
        {
            "external_userid": customer,
            "takeover_userid": "guide0002",
            "status": 4,
            "takeover_time": 0,
        }
    ]


def test_random_actions_are_mostly_contact_events_with_some_group_and_tag_events(
    emulator, callbacks
):
    rng = random.Random(7)
    for _ in range(300):
        emulator.random_action(rng)
    kinds = Counter(event(plain)["Event"] for plain in callbacks)
    # a draw of a customer already in a group joining it changes nothing: no callback
    assert 290 <= len(callbacks) <= 300
    assert kinds["change_external_contact"] >= 0.7 * len(callbacks)
    assert kinds["change_external_chat"] >= 10
    assert kinds["change_external_tag"] >= 10
    assert set(kinds) == {"change_external_contact", "change_external_chat", "change_external_tag"}


def test_random_actions_read_like_a_brand_s_not_like_test_data(emulator, callbacks):
    """New customers have names of their own; tags and remarks are words, not numbered."""
    seeded = set(emulator.data.customers)
    rng = random.Random(11)
    for _ in range(400):
        emulator.random_action(rng)
    new = [c["name"] for key, c in emulator.data.customers.items() if key not in seeded]
    assert len(new) > 100
    assert all(re.fullmatch(r"[\u4e00-\u9fff]{2,3}", name) for name in new), new[:10]
    assert len(set(new)) > len(new) / 2
    groups = emulator.data.tag_groups
    names = [g["group_name"] for g in groups] + [t["name"] for g in groups for t in g["tag"]]
    assert not [name for name in names if re.search(r"\d", name)]
    for group in groups:  # no tag twice in a group, however it was renamed
        assert len({t["name"] for t in group["tag"]}) == len(group["tag"])
    assert len(names) > 2 + 7  # the stream added some
    remarks = [f["remark"] for follows in emulator.data.follows.values() for f in follows]
    assert [r for r in remarks if r]
    assert not [r for r in remarks if re.search(r"\d", r)]


def test_actions_over_http(emulator, callbacks):
    root = settings.WECOM_API_BASE.removesuffix("cgi-bin/")
    customer = customers_of(emulator, "guide0001")[0]
    reply = requests.post(
        f"{root}_emulator/actions/group_member_joins",
        json={"chat_id": FIRST_CHAT, "external_userid": customer},
        timeout=5,
    )
    assert reply.json() == {"callback_status": 200}
    assert event(callbacks[0])["UpdateDetail"] == "add_member"
    assert requests.post(f"{root}_emulator/actions/nothing", timeout=5).status_code == 404
    unknown = requests.post(
        f"{root}_emulator/actions/group_dismissed", json={"chat_id": "wrnosuch"}, timeout=5
    )
    assert unknown.status_code == 400


def test_the_command_takes_a_quota_policy():
    from scrm.management.commands.wecom_emulator import Command

    parser = Command().create_parser("manage.py", "wecom_emulator")
    options = parser.parse_args(["--quota-policy", "weekly", "--token-ttl", "60"])
    assert (options.quota_policy, options.token_ttl) == ("weekly", 60)
    assert parser.parse_args([]).quota_policy == "month_days"
    with pytest.raises(CommandError):
        parser.parse_args(["--quota-policy", "hourly"])
    with pytest.raises(ValueError, match="quota_policy"):
        Config(quota_policy="hourly")


# -- through our own callback endpoint and worker ------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_customer_joining_a_group_reaches_the_platform(emulator, live_server, celery_worker):
    emulator.config.callback_url = f"{live_server.url}/wecom/callback/"
    group = emulator.data.groups[FIRST_CHAT]
    present = {m["userid"] for m in group["member_list"]}
    joiner = next(e for e in customers_of(emulator, "guide0004") if e not in present)
    assert emulator.group_member_joins(FIRST_CHAT, joiner) == 200
    stored = CallbackEvent.objects.get(event="change_external_chat")
    assert (stored.change_type, stored.payload["ChatId"], stored.payload["UpdateDetail"]) == (
        "update",
        FIRST_CHAT,
        "add_member",
    )
    wait_for(lambda: CallbackEvent.objects.get(pk=stored.pk).status == CallbackEvent.Status.HANDLED)
    member = CustomerGroupMember.objects.get(group__chat_id=FIRST_CHAT, userid=joiner)
    assert (member.type, member.join_scene) == (2, 1)
    chat = CustomerGroup.objects.get(chat_id=FIRST_CHAT)
    assert chat.member_version == stored.payload["CurMemVer"] == group["member_version"]
    assert chat.member_count == chat.members.count() == 21


@pytest.mark.django_db(transaction=True)
def test_a_tag_created_in_the_console_reaches_the_platform(emulator, live_server, celery_worker):
    emulator.config.callback_url = f"{live_server.url}/wecom/callback/"
    assert emulator.admin_creates_tag("客户等级", "钻石卡") == 200
    stored = CallbackEvent.objects.get(event="change_external_tag")
    assert (stored.change_type, stored.payload["TagType"]) == ("create", "tag")
    wait_for(lambda: CallbackEvent.objects.get(pk=stored.pk).status == CallbackEvent.Status.HANDLED)
    tag = CorpTag.objects.get(name="钻石卡")
    assert tag.wecom_tag_id == stored.payload["Id"]
    assert (tag.group.name, tag.group.wecom_group_id, tag.is_deleted) == ("客户等级", LEVEL, False)
    assert CorpTag.objects.count() == 8
