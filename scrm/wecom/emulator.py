"""A local WeCom (企业微信) for tests and the demo: WeCom's paths, JSON shapes and errcodes.

Serves, over real HTTP, in memory, from a seeded generator (the same seed gives
the same data):

- tokens: gettoken with expiry and early revocation; per-app permissions (an
  agent token calling externalcontact/* when the app is not in 客户联系's list,
  or a 客户联系 token calling message/send: 48002);
- contacts: department/list, user/list, user/simplelist, user/get;
- 客户联系: get_follow_user_list, list, get (follow_user paged at 500),
  batch/get_by_user, remark;
- corp tags: get_corp_tag_list (by tag_id / group_id), add/edit/del_corp_tag,
  mark_tag (3,000 tags per corp);
- groups: groupchat/list (status and owner filters, 81017) and groupchat/get;
- mass messages: add_msg_template, get_groupmsg_list_v2, get_groupmsg_task,
  get_groupmsg_send_result, remind_groupmsg_send, cancel_groupmsg_send, with a
  per-customer receive quota (`Config.quota_policy`);
- welcome messages (send_welcome_msg, 20 s single-use codes) and 「联系我」
  contact ways (add/get/update/del_contact_way);
- app messages to staff (message/send, 30 a minute per member).

Errors answer as WeCom does: HTTP 200 with the errcode of WeCom's global list
(41001, 40014, 42001, 40013, 40001, 40058, 40096, 84061, 40068, 40071, 45009
past the per-second limit, …). API calls raise no callbacks, as in WeCom.

Simulated user actions (customers adding, deleting or scanning a contact way;
guides editing remarks or tags, confirming a mass message; groups created,
joined, left, dismissed; tags created, renamed, deleted in the admin console;
a failed transfer; a member deleted or disabled by an admin) change the data
and push a signed, encrypted callback to `callback_url`, as Python methods and
as POST /_emulator/actions/<name>.
"""

import base64
import calendar
import hashlib
import json
import random
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs, urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from xml.sax.saxutils import escape

import requests
import xmltodict
from wechatpy.enterprise.crypto import WeChatCrypto

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "芳娜敏静丽艳娟霞秀英华玲婷雪琳晶燕红梅颖欣怡佳宁雅琪蕾萍洁然琦慧倩月瑶璐楠涛伟强磊军洋勇杰斌浩宇鹏"
CITIES = [
    ("上海", "静安"),
    ("上海", "徐汇"),
    ("杭州", "湖滨"),
    ("北京", "三里屯"),
    ("广州", "天河"),
    ("深圳", "万象"),
    ("成都", "太古里"),
    ("南京", "新街口"),
    ("武汉", "江汉路"),
    ("苏州", "观前街"),
]
STATES = ["", "", "", "pkg_card", "store_table", "live_0618", "live_1111"]
TAG_GROUPS = {"客户等级": ["普通", "银卡", "金卡"], "兴趣": ["冰丝", "棉", "基础款", "主题款"]}
# What the live stream (`random_action`) has admins add and guides write, so that the
# demo's tags and remarks read like a brand's: a tag not there yet, a new group once.
LIVE_TAGS = {
    "客户等级": ["钻石卡", "黑金卡"],
    "兴趣": ["真丝", "亚麻", "羊毛", "莫代尔", "家居服", "运动系列", "通勤款", "设计师联名"],
    "生活方式": ["宝妈", "上班族", "学生", "健身", "爱旅行"],
}
REMARKS = [
    "老客户",
    "门店常客",
    "宝妈",
    "上班族",
    "喜欢冰丝",
    "偏好基础款",
    "生日在三月",
    "约了试衣",
]


def _name(rng: random.Random) -> str:
    """A customer's WeChat name: a surname and one or two characters."""
    return (
        rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.6 else "")
    )


def _renamed(group_name: str, name: str) -> str:
    """How an admin renames a tag in the live stream: 金卡 ⇄ 金卡会员, 棉 ⇄ 棉系列."""
    suffix = "会员" if group_name == "客户等级" else "系列"
    return name.removesuffix(suffix) if name.endswith(suffix) and name != suffix else name + suffix


# Calendar days, weeks and months of WeCom's quotas are Beijing time.
BEIJING = timezone(timedelta(hours=8))
QUOTA_POLICIES = ("month_days", "four_per_month", "daily", "weekly")
ATTACHMENT_TYPES = ("image", "link", "miniprogram", "video", "file")
APP_MESSAGE_TYPES = (
    "text",
    "image",
    "voice",
    "video",
    "file",
    "textcard",
    "news",
    "mpnews",
    "markdown",
    "miniprogram_notice",
    "template_card",
)


@dataclass
class Config:
    corp_id: str = "ww5f1e2d3c4b5a6978"
    # The 客户联系 secret first, then the self-built app's (the agent's).
    secrets: tuple[str, ...] = (
        "dev-contact-secret-0123456789abcdef",
        "dev-agent-secret-0123456789abcdef",
    )
    agent_id: int = 1000002  # the self-built app message/send must name
    # The self-built app is in 「客户联系 → 可调用接口的应用」, so its token may call
    # externalcontact/*; False makes those calls 48002, as for an app not in the list.
    agent_can_use_contacts: bool = True
    token_ttl: int = 7200
    qps_limit: int = 0  # calls per second per API path; 0 = off (WeCom: 10,000/min)
    latency: float = 0.0  # seconds added to every answer, as over a real network
    callback_url: str = ""  # where simulated user actions deliver their callbacks
    callback_token: str = "DevCallbackToken2026"  # noqa: S105 - the emulator's own
    callback_aes_key: str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    # Mass messages one customer (or customer group) may receive: "month_days" (as
    # many a month as the month has days: WeCom's current rule), "four_per_month"
    # (the rule until 2024), "daily" (1 a day) or "weekly" (7 a week), the last two
    # being what 群发助手 settings allow.
    quota_policy: str = "month_days"
    # get_groupmsg_* answer 41063 for this long after add_msg_template (WeCom is still
    # dispatching the task); 0 = never.
    groupmsg_dispatch_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.quota_policy not in QUOTA_POLICIES:
            raise ValueError(f"quota_policy must be one of {QUOTA_POLICIES}")


@dataclass
class WeComData:
    departments: list[dict] = field(default_factory=list)
    users: list[dict] = field(default_factory=list)
    customers: dict[str, dict] = field(default_factory=dict)  # external_userid → contact
    # userid → list of follow_info dicts (one per relation), in a fixed order; a
    # user without an entry has no 客户联系 permission
    follows: dict[str, list[dict]] = field(default_factory=dict)
    tag_groups: list[dict] = field(default_factory=list)
    groups: dict[str, dict] = field(default_factory=dict)
    seed: int = 0
    # New ids (tags, chats, msgids, config ids, customers) count on from here: far
    # above any generated number, so they never clash with generated ids.
    serial: int = 1_000_000_000
    follows_version: int = 0  # bumped by every change to `follows`
    group_status: dict[str, int] = field(default_factory=dict)  # chat_id → 0 … 3
    deleted_tag_groups: dict[str, dict] = field(default_factory=dict)  # id → group header
    deleted_tags: dict[str, tuple[dict, dict]] = field(default_factory=dict)  # id → (group, tag)
    contact_ways: dict[str, dict] = field(default_factory=dict)  # config_id → way
    contact_way_turns: Counter[str] = field(default_factory=Counter)  # round robin
    welcome_codes: dict[str, dict] = field(default_factory=dict)  # code → who, when, used
    oauth_codes: dict[str, dict] = field(default_factory=dict)  # code → userid, issued_at
    welcome_messages: list[dict] = field(default_factory=list)  # what send_welcome_msg sent
    group_msgs: dict[str, dict] = field(default_factory=dict)  # msgid → mass message
    received: dict[str, list[float]] = field(default_factory=dict)  # target → times received
    app_messages: list[dict] = field(default_factory=list)  # message/send, one per member
    app_message_times: dict[str, list[float]] = field(default_factory=dict)
    transfers: list[dict] = field(default_factory=list)  # failed takeovers

    def follows_of(self, external_userid: str) -> list[dict]:
        """The relations of one customer, from an index built on first use (rebuilt when
        the relations changed since)."""
        key = (sum(len(follows) for follows in self.follows.values()), self.follows_version)
        if getattr(self, "_index_key", None) != key:
            index: dict[str, list[dict]] = {}
            for follows in self.follows.values():
                for follow in follows:
                    index.setdefault(follow["external_userid"], []).append(follow)
            self._index, self._index_key = index, key
        return self._index.get(external_userid, [])

    def touch(self) -> None:
        self.follows_version += 1


def _member_version(*parts: object) -> str:
    return hashlib.md5(":".join(map(str, parts)).encode()).hexdigest()  # noqa: S324 - an id


def generate(*, seed: int, guides: int, customers: int, now: int = 1_790_000_000) -> WeComData:
    """A brand: stores of about eight guides, customers followed by one to three guides,
    as of `now` (Unix time; by default a fixed day of 2026-09): its relationships were
    added in the two years before, its groups made in the year before."""
    rng = random.Random(seed)  # noqa: S311 - fake data
    data = WeComData(seed=seed)
    store_count = max(1, guides // 8)
    data.departments.append(
        {"id": 1, "name": "品牌总部", "name_en": "HQ", "parentid": 0, "order": 1}
    )
    for number in range(store_count):
        city, area = CITIES[number % len(CITIES)]
        suffix = "" if number < len(CITIES) else f"{number // len(CITIES) + 1}号"
        data.departments.append(
            {
                "id": 100 + number,
                "name": f"{city}{area}{suffix}店",
                "name_en": f"ST{number + 1:03d}",
                "parentid": 1,
                "order": number,
            }
        )
    for number in range(guides):
        userid = f"guide{number + 1:04d}"
        data.users.append(
            {
                "userid": userid,
                "name": rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
                "department": [100 + number % store_count],
                "status": 1,
            }
        )
        data.follows[userid] = []
    tag_ids = []
    for order, (group_name, names) in enumerate(TAG_GROUPS.items()):
        group_id = f"et{seed:04d}g{order:026d}"
        tags = []
        for index, name in enumerate(names):
            tag_id = f"et{seed:04d}t{order:02d}{index:024d}"
            tag_ids.append(tag_id)
            tags.append({"id": tag_id, "name": name, "create_time": 1700000000, "order": index})
        data.tag_groups.append(
            {
                "group_id": group_id,
                "group_name": group_name,
                "create_time": 1700000000,
                "order": order,
                "tag": tags,
            }
        )
    userids = [user["userid"] for user in data.users]
    for number in range(customers):
        external_userid = f"wm{seed:04d}{number:026d}"
        is_wechat = rng.random() < 0.95
        contact = {
            "external_userid": external_userid,
            "name": _name(rng),
            "avatar": f"http://wework.qpic.cn/avatar/{number}/0",
            "type": 1 if is_wechat else 2,
            "gender": rng.choice((0, 1, 2, 2, 2)),
        }
        if is_wechat and rng.random() < 0.7:
            contact["unionid"] = f"o{seed:04d}u{number:023d}"
        if not is_wechat:
            contact["corp_name"] = "某某科技"
        data.customers[external_userid] = contact
        for userid in rng.sample(userids, k=min(len(userids), rng.choice((1, 1, 1, 1, 2, 3)))):
            follow = {
                "userid": userid,
                "remark": contact["name"] if rng.random() < 0.5 else "",
                "description": "",
                "createtime": now - rng.randrange(730 * 86400),
                "tag_id": [tag for tag in tag_ids if rng.random() < 0.15],
                "oper_userid": external_userid if rng.random() < 0.7 else userid,
                "add_way": rng.choice((1, 1, 2, 3, 4, 5)),
            }
            state = rng.choice(STATES)
            if state:
                follow["state"] = state
            if rng.random() < 0.4:
                follow["remark_mobiles"] = [f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"]
            data.follows[userid].append(follow | {"external_userid": external_userid})
    for number in range(max(1, customers // 200)):
        owner = rng.choice(userids)
        members = rng.sample(list(data.customers), k=min(len(data.customers), rng.randint(3, 30)))
        chat_id = f"wr{seed:04d}{number:024d}"
        data.groups[chat_id] = {
            "chat_id": chat_id,
            "name": f"{owner} 的福利群 {number + 1}",
            "owner": owner,
            "create_time": now - rng.randrange(365 * 86400),
            "notice": "",
            "member_list": [{"userid": owner, "type": 1, "join_time": now, "join_scene": 1}]
            + [{"userid": m, "type": 2, "join_time": now, "join_scene": 1} for m in members],
            "admin_list": [],
            "member_version": _member_version(seed, chat_id),
        }
    return data


def _cursor(*numbers: int) -> str:
    return base64.urlsafe_b64encode(json.dumps(numbers).encode()).decode()


def _uncursor(text: str, size: int) -> list[int] | None:
    if not text:
        return [0] * size
    try:
        numbers = json.loads(base64.urlsafe_b64decode(text.encode()))
    except ValueError:
        return None
    valid = isinstance(numbers, list) and len(numbers) == size
    return numbers if valid and all(isinstance(n, int) and n >= 0 for n in numbers) else None


class WeComEmulator:
    """The emulated corp: tokens, data, call counts. Thread-safe."""

    # WeCom's limits, as class constants so a test can lower one on an instance.
    FOLLOW_USER_PAGE = 500  # externalcontact/get: follow_user per page
    GROUPCHAT_LIST_UNFILTERED_MEMBERS = 1000  # groupchat/list needs owner_filter above this
    CORP_TAG_LIMIT = 3000  # corp tags per corp
    TAG_NAME_MAX = 30  # characters of a tag or tag group name
    CONTACT_WAY_LIMIT = 500_000  # 「联系我」 ways added through the API, per corp
    CONTACT_WAY_MEMBERS = 100  # members of one way, departments expanded
    WELCOME_CODE_SECONDS = 20  # a welcome_code is valid this long, once
    MSG_TEMPLATE_CUSTOMERS = 10_000  # add_msg_template external_userid
    MSG_TEMPLATE_CHATS = 2_000  # add_msg_template chat_id_list
    ATTACHMENTS = 9
    TEXT_BYTES = 4000  # text.content of mass and welcome messages
    GROUPMSG_LIST_SPAN = 31 * 86400  # "at most one month": the longest month
    REMINDS_PER_DAY = 3  # remind_groupmsg_send per msgid per 24 h
    APP_MESSAGES_PER_MINUTE = 30  # message/send to one member; the excess is dropped
    APP_MESSAGES_PER_HOUR = 1000

    def __init__(self, data: WeComData, config: Config | None = None, clock=time.time) -> None:
        self.data = data
        self.config = config or Config()
        self.clock = clock
        # Re-entrant: a request holds it for the handler and the JSON encoding, and
        # the helpers the handlers share with the simulated actions take it again.
        self.lock = threading.RLock()
        self.tokens: dict[str, tuple[str, float]] = {}  # token → (secret, expires_at)
        self.calls: Counter[str] = Counter()
        self.per_second: Counter[tuple[str, int]] = Counter()
        self.faults: list[int] = []  # errcodes the next calls answer with

    # -- test and demo hooks -----------------------------------------------------
    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def stats(self) -> dict[str, int]:
        with self.lock:
            return dict(self.calls)

    def relations_count(self) -> int:
        return sum(len(follows) for follows in self.data.follows.values())

    @property
    def welcome_messages(self) -> list[dict]:
        """What send_welcome_msg delivered: welcome_code, userid, external_userid, text,
        attachments, sent_at (one entry per accepted call)."""
        return self.data.welcome_messages

    @property
    def app_messages(self) -> list[dict]:
        """What message/send delivered: one entry per member reached (userid, agentid,
        msgtype and its payload, sent_at); messages over a member's cap are not here."""
        return self.data.app_messages

    # -- simulated user actions: the only source of callbacks, as in WeCom ---------
    def customer_deletes_guide(self, external_userid: str, userid: str) -> int:
        """The customer deletes the guide in WeChat: del_follow_user."""
        self._drop_relation(external_userid, userid)
        return self.deliver("change_external_contact", "del_follow_user", userid, external_userid)

    def guide_deletes_customer(self, external_userid: str, userid: str) -> int:
        """The guide deletes the customer in the WeCom client: del_external_contact."""
        self._drop_relation(external_userid, userid)
        return self.deliver(
            "change_external_contact", "del_external_contact", userid, external_userid
        )

    def member_leaves(self, userid: str) -> int:
        """An admin deletes the member (they left the company): change_contact
        delete_user. They are gone from user/list and get_follow_user_list; their
        customers wait for a successor, which is not emulated (get_unassigned_list)."""
        with self.lock:
            if self._user(userid) is None:
                raise ValueError(f"unknown member: {userid}")
            self.data.users = [user for user in self.data.users if user["userid"] != userid]
            self.data.follows.pop(userid, None)
            self.data.touch()
        return self.deliver("change_contact", "delete_user", userid)

    def member_disabled(self, userid: str) -> int:
        """An admin disables the member (status 2): change_contact update_user, which
        names the member alone."""
        with self.lock:
            user = self._user(userid)
            if user is None:
                raise ValueError(f"unknown member: {userid}")
            user["status"] = 2
        return self.deliver("change_contact", "update_user", userid)

    def guide_edits_remark(self, external_userid: str, userid: str, remark: str) -> int:
        """The guide edits the remark in the client: edit_external_contact."""
        with self.lock:
            for follow in self.data.follows[userid]:
                if follow["external_userid"] == external_userid:
                    follow["remark"] = remark
        return self.deliver(
            "change_external_contact", "edit_external_contact", userid, external_userid
        )

    def guide_edits_tags(
        self,
        external_userid: str,
        userid: str,
        add: list[str] | tuple[str, ...] = (),
        remove: list[str] | tuple[str, ...] = (),
    ) -> int:
        """The guide edits the customer's corp tags in the client: edit_external_contact
        (WeCom fires it for tag edits as for remark edits)."""
        with self.lock:
            follow = self._follow(userid, external_userid)
            if follow is None:
                raise ValueError(f"{userid} does not follow {external_userid}")
            unknown = set(add) - set(self._tag_index())
            if unknown:
                raise ValueError(f"unknown corp tags: {sorted(unknown)}")
            follow["tag_id"] = sorted((set(follow["tag_id"]) | set(add)) - set(remove))
        return self.deliver(
            "change_external_contact", "edit_external_contact", userid, external_userid
        )

    def customer_adds_guide(self, external_userid: str, userid: str, state: str = "") -> int:
        """A customer (existing or new) adds a guide, e.g. by scanning a channel code:
        add_external_contact with the State and a WelcomeCode (valid 20 s, once)."""
        return self._customer_adds(external_userid, userid, state)

    def customer_scans_contact_way(self, config_id: str, external_userid: str | None = None) -> int:
        """A customer (a new one unless given) scans a 「联系我」 code and is added to one of
        its members, in turn: add_external_contact with the way's State, add_way 1."""
        with self.lock:
            way = self.data.contact_ways.get(config_id)
            if way is None:
                raise ValueError(f"unknown config_id: {config_id}")
            members = self._way_members(way["user"], way["party"])
            if not members:
                raise ValueError(f"contact way {config_id} has no members")
            userid = members[self.data.contact_way_turns[config_id] % len(members)]
            self.data.contact_way_turns[config_id] += 1
            if external_userid is None:
                external_userid = f"wm{self.data.seed:04d}{self._serial():026d}"
        return self._customer_adds(external_userid, userid, way.get("state", ""))

    def guide_confirms_send(self, msgid: str, userid: str) -> int:
        """The guide confirms a mass-message task in the client (nothing is sent before):
        the task becomes 2 (sent) and each target 1 (sent), 2 (no longer a friend or
        the group is gone) or 3 (over the receive quota). No callback: returns 0."""
        with self.lock:
            message = self.data.group_msgs.get(msgid)
            if message is None or userid not in message["tasks"]:
                raise ValueError(f"no task of {msgid} for {userid}")
            task = message["tasks"][userid]
            if message["cancelled"] or task["status"] != 0:
                return 0
            now = self.clock()
            for target in message["targets"]:
                if target["userid"] != userid or target["status"] != 0:
                    continue
                if message["chat_type"] == "single":
                    key = target["external_userid"]
                    reachable = self._follow(userid, key) is not None
                else:
                    key = target["chat_id"]
                    reachable = key in self.data.groups
                if not reachable:
                    target["status"] = 2
                elif self._over_quota(key, now):
                    target["status"] = 3
                else:
                    target["status"], target["send_time"] = 1, int(now)
                    self.data.received.setdefault(key, []).append(now)
            task["status"], task["send_time"] = 2, int(now)
        return 0

    def guide_creates_mass_message(
        self, userid: str, external_userids: list[str], content: str
    ) -> str:
        """A guide creates a mass message in the client (create_type 1, with a creator):
        what get_groupmsg_list_v2's filter_type 1 and creator select. Returns the msgid."""
        body = {"external_userid": external_userids, "sender": userid, "text": {"content": content}}
        with self.lock:
            reply = self._create_group_msg(body, creator=userid)
        if reply["errcode"]:
            raise ValueError(reply["errmsg"])
        return reply["msgid"]

    def group_created(self, owner: str, name: str = "", chat_id: str | None = None) -> int:
        """The guide creates a customer group in the client: change_external_chat create."""
        with self.lock:
            if self._user(owner) is None:
                raise ValueError(f"unknown userid: {owner}")
            chat_id = chat_id or f"wr{self.data.seed:04d}{self._serial():024d}"
            now = int(self.clock())
            self.data.groups[chat_id] = {
                "chat_id": chat_id,
                "name": name,
                "owner": owner,
                "create_time": now,
                "notice": "",
                "member_list": [{"userid": owner, "type": 1, "join_time": now, "join_scene": 1}],
                "admin_list": [],
                "member_version": _member_version(chat_id, self._serial()),
            }
        return self.deliver("change_external_chat", "create", ChatId=chat_id)

    def group_member_joins(
        self, chat_id: str, external_userid: str | list[str], join_scene: int = 1
    ) -> int:
        """Customers (or members) join a group: change_external_chat update add_member.

        `join_scene` is groupchat/get's (1 invited, 2 invite link, 3 group QR code); the
        callback's JoinScene is 0 for an invitation and 3 for the QR code, as in WeCom.
        """
        ids = [external_userid] if isinstance(external_userid, str) else list(external_userid)
        with self.lock:
            group = self._group(chat_id)
            present = {member["userid"] for member in group["member_list"]}
            joined = [i for i in dict.fromkeys(ids) if i not in present]
            if not joined:
                return 0
            now = int(self.clock())
            for userid in joined:
                member = {
                    "userid": userid,
                    "type": 1 if self._user(userid) else 2,
                    "join_time": now,
                    "join_scene": join_scene,
                }
                if join_scene in (1, 2):
                    member["invitor"] = {"userid": group["owner"]}
                group["member_list"].append(member)
            last, current = self._new_member_version(group)
        return self.deliver(
            "change_external_chat",
            "update",
            ChatId=chat_id,
            UpdateDetail="add_member",
            JoinScene=3 if join_scene == 3 else 0,
            MemChangeCnt=len(joined),
            MemChangeList=joined,
            LastMemVer=last,
            CurMemVer=current,
        )

    def group_member_leaves(
        self, chat_id: str, external_userid: str | list[str], quit_scene: int = 0
    ) -> int:
        """Members leave (quit_scene 0) or are removed (1): update del_member."""
        ids = [external_userid] if isinstance(external_userid, str) else list(external_userid)
        with self.lock:
            group = self._group(chat_id)
            if group["owner"] in ids:
                raise ValueError("the owner cannot leave; dismiss the group instead")
            left = [m["userid"] for m in group["member_list"] if m["userid"] in ids]
            if not left:
                return 0
            group["member_list"] = [m for m in group["member_list"] if m["userid"] not in left]
            last, current = self._new_member_version(group)
        return self.deliver(
            "change_external_chat",
            "update",
            ChatId=chat_id,
            UpdateDetail="del_member",
            QuitScene=quit_scene,
            MemChangeCnt=len(left),
            MemChangeList=left,
            LastMemVer=last,
            CurMemVer=current,
        )

    def group_dismissed(self, chat_id: str) -> int:
        """The owner dismisses the group: change_external_chat dismiss; WeCom lists it no
        more and groupchat/get answers 40050."""
        with self.lock:
            self._group(chat_id)
            del self.data.groups[chat_id]
            self.data.group_status.pop(chat_id, None)
        return self.deliver("change_external_chat", "dismiss", ChatId=chat_id)

    def admin_creates_tag(self, group_name: str, name: str) -> int:
        """An admin adds a tag in the console: change_external_tag create, TagType tag, or
        tag_group (with the group's id) when the group is new."""
        with self.lock:
            if not all(1 <= len(n) <= self.TAG_NAME_MAX for n in (group_name, name)):
                raise ValueError("tag and group names are 1 to 30 characters")
            if self._live_tag_count() >= self.CORP_TAG_LIMIT:
                raise ValueError("the corp already has 3,000 corp tags")
            group = next((g for g in self.data.tag_groups if g["group_name"] == group_name), None)
            if group is not None and any(t["name"] == name for t in group["tag"]):
                raise ValueError(f"{group_name} already has a tag {name}")
            if group is None:
                group = self._new_tag_group(group_name, 0)
                self._new_tag(group, name, 0)
                changed, tag_type = group["group_id"], "tag_group"
            else:
                changed, tag_type = self._new_tag(group, name, 0)["id"], "tag"
        return self.deliver("change_external_tag", "create", Id=changed, TagType=tag_type)

    def admin_renames_tag(self, tag_id: str, name: str) -> int:
        """An admin renames a tag or a tag group: change_external_tag update."""
        with self.lock:
            if not 1 <= len(name) <= self.TAG_NAME_MAX:
                raise ValueError("tag and group names are 1 to 30 characters")
            target, tag_type = self._tag_or_group(tag_id)
            if target is None:
                raise ValueError(f"unknown tag or group id: {tag_id}")
            target["group_name" if tag_type == "tag_group" else "name"] = name
        return self.deliver("change_external_tag", "update", Id=tag_id, TagType=tag_type)

    def admin_deletes_tag(self, tag_id: str) -> int:
        """An admin deletes a tag or a whole group (its tags go with it, without callbacks
        of their own): change_external_tag delete. The tag leaves every relation."""
        with self.lock:
            target, tag_type = self._tag_or_group(tag_id)
            if target is None:
                raise ValueError(f"unknown tag or group id: {tag_id}")
            if tag_type == "tag":
                self._delete_corp_tags({tag_id}, set())
            else:
                self._delete_corp_tags(set(), {tag_id})
        return self.deliver("change_external_tag", "delete", Id=tag_id, TagType=tag_type)

    def transfer_fails(
        self, external_userid: str, takeover_userid: str, reason: str = "customer_refused"
    ) -> int:
        """A takeover fails (the customer refused, or the takeover member is at the
        customer limit): transfer_fail, whose UserID is the takeover member."""
        if reason not in ("customer_refused", "customer_limit_exceed"):
            raise ValueError("reason is customer_refused or customer_limit_exceed")
        with self.lock:
            self.data.transfers.append(
                {
                    "external_userid": external_userid,
                    "takeover_userid": takeover_userid,
                    # transfer_result's statuses: 3 refused, 4 takeover member at the limit
                    "status": 3 if reason == "customer_refused" else 4,
                    "takeover_time": 0,
                }
            )
        return self.deliver(
            "change_external_contact",
            "transfer_fail",
            takeover_userid,
            external_userid,
            FailReason=reason,
        )

    def random_action(self, rng: random.Random) -> int:
        """One plausible user action, for a steady stream of callbacks (demo, load tests):
        mostly contact events, some group and tag events."""
        userid = rng.choice(list(self.data.follows))
        follows = self.data.follows[userid]
        roll = rng.random()
        if roll < 0.45 or not follows:
            return self.customer_adds_guide(
                f"wmnew{rng.getrandbits(64):026x}", userid, rng.choice(STATES)
            )
        external_userid = rng.choice(follows)["external_userid"]
        if roll < 0.62:
            return self.guide_edits_remark(external_userid, userid, rng.choice(REMARKS))
        if roll < 0.72:
            return self.customer_deletes_guide(external_userid, userid)
        if roll < 0.77:
            return self.guide_deletes_customer(external_userid, userid)
        tags = sorted(self._tag_index())
        if roll < 0.82 and tags:
            return self.guide_edits_tags(external_userid, userid, add=[rng.choice(tags)])
        chats = sorted(self.data.groups)
        if roll < 0.89 and chats:
            return self.group_member_joins(rng.choice(chats), external_userid)
        if roll < 0.94 and chats:
            group = self.data.groups[rng.choice(chats)]
            customers = [m["userid"] for m in group["member_list"] if m["type"] == 2]
            if customers:
                return self.group_member_leaves(group["chat_id"], rng.choice(customers))
        new_tags = self._live_tags_missing()
        if (roll < 0.98 or not tags) and new_tags and self._live_tag_count() < self.CORP_TAG_LIMIT:
            return self.admin_creates_tag(*rng.choice(new_tags))
        group, tag = self._tag_index()[rng.choice(tags)]
        return self.admin_renames_tag(tag["id"], _renamed(group["group_name"], tag["name"]))

    def _live_tags_missing(self) -> list[tuple[str, str]]:
        """(group name, tag name) of the LIVE_TAGS the corp has in neither of its names
        (`_renamed`): a rename never meets a tag of the name it gives."""
        present = {
            (g["group_name"], name)
            for g in self.data.tag_groups
            for t in g["tag"]
            for name in (t["name"], _renamed(g["group_name"], t["name"]))
        }
        return [
            (group_name, name)
            for group_name, names in LIVE_TAGS.items()
            for name in names
            if (group_name, name) not in present
        ]

    def _customer_adds(self, external_userid: str, userid: str, state: str) -> int:
        with self.lock:
            if userid not in self.data.follows:
                raise ValueError(f"{userid} has no 客户联系 permission")
            if external_userid not in self.data.customers:
                self.data.customers[external_userid] = {
                    "external_userid": external_userid,
                    # the same name each time this customer is new, as with the seeded ones
                    "name": _name(random.Random(external_userid)),  # noqa: S311 - fake data
                    "type": 1,
                    "gender": 0,
                    "avatar": "",
                }
            follow = {
                "external_userid": external_userid,
                "userid": userid,
                "remark": "",
                "description": "",
                "createtime": int(self.clock()),
                "tag_id": [],
                "oper_userid": external_userid,  # the customer added the guide
                "add_way": 1,  # 扫描二维码: a channel code or a 「联系我」 QR code
            }
            if state:
                follow["state"] = state
            self.data.follows[userid] = [
                f for f in self.data.follows[userid] if f["external_userid"] != external_userid
            ] + [follow]
            self.data.touch()
            welcome_code = secrets.token_urlsafe(16)
            self.data.welcome_codes[welcome_code] = {
                "userid": userid,
                "external_userid": external_userid,
                "issued_at": self.clock(),
                "used": False,
            }
        return self.deliver(
            "change_external_contact",
            "add_external_contact",
            userid,
            external_userid,
            State=state,
            WelcomeCode=welcome_code,
        )

    def _drop_relation(self, external_userid: str, userid: str) -> None:
        with self.lock:
            self.data.follows[userid] = [
                f for f in self.data.follows[userid] if f["external_userid"] != external_userid
            ]
            self.data.touch()

    def event_xml(
        self, event: str, change_type: str, userid: str = "", external_userid: str = "", **extra
    ) -> str:
        """The decrypted callback XML, as WeCom lays it out: contact events carry UserID and
        ExternalUserID; chat and tag events their ChatId / Id and TagType before the
        ChangeType. Numbers are bare, strings CDATA, lists `<Item>` children; empty
        fields are left out."""
        fields: dict[str, object] = {
            "ToUserName": self.config.corp_id,
            "FromUserName": "sys",
            "CreateTime": int(self.clock()),
            "MsgType": "event",
            "Event": event,
        }
        if event == "change_external_contact":
            fields |= {"ChangeType": change_type, "UserID": userid}
            fields["ExternalUserID"] = external_userid
        elif event == "change_contact":  # a member: UserID alone (path/96302)
            fields |= {"ChangeType": change_type, "UserID": userid}
        else:
            fields |= {key: extra.pop(key) for key in ("ChatId", "Id", "TagType") if key in extra}
            fields["ChangeType"] = change_type
        fields |= {key: value for key, value in extra.items() if value not in ("", None)}
        parts = []
        for key, value in fields.items():
            if isinstance(value, list | tuple):
                items = "".join(f"<Item>{escape(str(item))}</Item>" for item in value)
                parts.append(f"<{key}>{items}</{key}>")
            elif isinstance(value, int):
                parts.append(f"<{key}>{value}</{key}>")
            else:
                parts.append(f"<{key}><![CDATA[{value}]]></{key}>")
        return "<xml>" + "".join(parts) + "</xml>"

    def deliver(
        self, event: str, change_type: str, userid: str = "", external_userid: str = "", **extra
    ) -> int:
        """Encrypt and sign the event as WeCom does and POST it to the callback URL; WeCom
        tries three times in all when the answer is not 200 within 5 s. Returns the status
        (0 when no callback URL is set or nothing answered)."""
        if not self.config.callback_url:
            return 0
        plain = self.event_xml(event, change_type, userid, external_userid, **extra)
        crypto = WeChatCrypto(
            self.config.callback_token, self.config.callback_aes_key, self.config.corp_id
        )
        nonce, timestamp = secrets.token_hex(8), int(time.time())
        signed = xmltodict.parse(crypto.encrypt_message(plain, nonce, timestamp))["xml"]
        body = (
            f"<xml><ToUserName><![CDATA[{self.config.corp_id}]]></ToUserName>"
            f"<Encrypt><![CDATA[{signed['Encrypt']}]]></Encrypt></xml>"
        )
        query = urlencode(
            {"msg_signature": signed["MsgSignature"], "timestamp": timestamp, "nonce": nonce}
        )
        status = 0
        for _ in range(3):
            try:
                status = requests.post(
                    f"{self.config.callback_url}?{query}", data=body.encode(), timeout=5
                ).status_code
            except requests.RequestException:
                status = 0
            if status == 200:
                break
        return status

    # -- WSGI --------------------------------------------------------------------
    ACTIONS = (
        "customer_deletes_guide",
        "guide_deletes_customer",
        "guide_edits_remark",
        "guide_edits_tags",
        "customer_adds_guide",
        "customer_scans_contact_way",
        "guide_confirms_send",
        "group_created",
        "group_member_joins",
        "group_member_leaves",
        "group_dismissed",
        "admin_creates_tag",
        "admin_renames_tag",
        "admin_deletes_tag",
        "transfer_fails",
        "member_leaves",
        "member_disabled",
    )

    def __call__(self, environ, start_response):
        raw_path = environ.get("PATH_INFO", "")
        if raw_path.startswith("/_emulator/actions/"):
            # Simulated user actions for demos and load tests: POST JSON arguments.
            name = raw_path.removeprefix("/_emulator/actions/")
            length = int(environ.get("CONTENT_LENGTH") or 0)
            arguments = json.loads(environ["wsgi.input"].read(length) or b"{}") if length else {}
            if name not in self.ACTIONS:
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"unknown action"]
            try:
                status = getattr(self, name)(**arguments)
            except (KeyError, TypeError, ValueError) as error:
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [str(error).encode()]
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps({"callback_status": status}).encode()]
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if raw_path == "/connect/oauth2/authorize":
            return self._oauth_authorize(query, start_response)
        path = raw_path.removeprefix("/cgi-bin/")
        body: dict | None = {}
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = None
        if self.config.latency:
            time.sleep(self.config.latency)
        with self.lock:
            # Encoded under the lock too: the reply may hold the emulator's own lists.
            payload = json.dumps(self.handle(path, query, body), ensure_ascii=False).encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", str(len(payload))),
            ],
        )
        return [payload]

    def handle(self, path: str, query: dict, body: dict | None) -> dict:
        with self.lock:
            self.calls[path] += 1
            second = int(self.clock())
            self.per_second[(path, second)] += 1
            if self.config.qps_limit and self.per_second[(path, second)] > self.config.qps_limit:
                return _error(45009, "api freq out of limit")
            if self.faults:
                return _error(self.faults.pop(0), "system busy")
            if path == "gettoken":
                return self._gettoken(query)
            token = query.get("access_token")
            if not token:
                return _error(41001, "access_token missing")
            known = self.tokens.get(token)
            if known is None:
                return _error(40014, "invalid access_token")
            if known[1] <= self.clock():
                return _error(42001, "access_token expired")
            forbidden = self._forbidden(path, known[0])
            if forbidden:
                return forbidden
            if not isinstance(body, dict):
                return _error(47001, "data format error")
            handler = getattr(self, "_" + path.replace("/", "_"), None)
            if handler is None:
                return _error(404, f"api not found: {path}")
            try:
                return handler(query, body)
            except (AttributeError, KeyError, TypeError, ValueError):
                # A field of the wrong type (a string for a list, …): WeCom's 40058.
                return _error(40058, "invalid parameter")

    def _forbidden(self, path: str, secret: str) -> dict | None:
        """48002 for a token of the wrong app: 客户联系 APIs only for the 客户联系 secret or
        an app in its 可调用应用 list; app messages only for an app (not 客户联系)."""
        contact_secret = self.config.secrets[0]
        agent_secret = self.config.secrets[1] if len(self.config.secrets) > 1 else None
        contacts_api = path.startswith("externalcontact/")
        if contacts_api and secret == agent_secret and not self.config.agent_can_use_contacts:
            return _error(48002, "api forbidden")
        if path.startswith("message/") and secret == contact_secret:
            return _error(48002, "api forbidden")
        return None

    def _gettoken(self, query: dict) -> dict:
        if query.get("corpid") != self.config.corp_id:
            return _error(40013, "invalid corpid")
        secret = query.get("corpsecret", "")
        if secret not in self.config.secrets:
            return _error(40001, "invalid credential, secret is invalid")
        now = self.clock()
        with self.lock:
            for token, (owner, expires_at) in self.tokens.items():
                if owner == secret and expires_at > now:
                    return {
                        "errcode": 0,
                        "errmsg": "ok",
                        "access_token": token,
                        "expires_in": int(expires_at - now),
                    }
            token = secrets.token_urlsafe(48)
            self.tokens[token] = (secret, now + self.config.token_ttl)
        return {
            "errcode": 0,
            "errmsg": "ok",
            "access_token": token,
            "expires_in": self.config.token_ttl,
        }

    # -- shared lookups (callers hold the lock) -----------------------------------
    def _serial(self) -> int:
        self.data.serial += 1
        return self.data.serial

    def _user(self, userid: str) -> dict | None:
        return next((user for user in self.data.users if user["userid"] == userid), None)

    def _follow(self, userid: str, external_userid: str) -> dict | None:
        follows = self.data.follows.get(userid, [])
        return next((f for f in follows if f["external_userid"] == external_userid), None)

    def _relation(self, userid: str, external_userid: str) -> tuple[dict | None, dict | None]:
        """(the relation, None), or (None, the errcode WeCom answers): 40096 for an
        unknown customer, 60111 for an unknown member, 84061 when they are not friends."""
        if external_userid not in self.data.customers:
            return None, _error(40096, "invalid external userid")
        if self._user(userid) is None:
            return None, _error(60111, f"userid not found: {userid}")
        follow = self._follow(userid, external_userid)
        if follow is None:
            return None, _error(84061, "not external contact")
        return follow, None

    def _group(self, chat_id: str) -> dict:
        group = self.data.groups.get(chat_id)
        if group is None:
            raise ValueError(f"unknown chat_id: {chat_id}")
        return group

    def _new_member_version(self, group: dict) -> tuple[str, str]:
        last = group["member_version"]
        group["member_version"] = _member_version(group["chat_id"], self._serial())
        return last, group["member_version"]

    def _department_ids(self, department_id: int, with_children: bool) -> set[int]:
        ids = {department_id}
        while with_children:
            children = {d["id"] for d in self.data.departments if d["parentid"] in ids} - ids
            if not children:
                break
            ids |= children
        return ids

    def _department_users(self, query: dict) -> list[dict] | dict:
        """The members of ?department_id (and its children with fetch_child=1), or 60123."""
        known = {d["id"] for d in self.data.departments}
        try:
            department_id = int(query.get("department_id", ""))
        except ValueError:
            department_id = None
        if department_id not in known:
            return _error(60123, "invalid party id")
        ids = self._department_ids(department_id, query.get("fetch_child") == "1")
        return [user for user in self.data.users if set(user["department"]) & ids]

    # -- contacts ------------------------------------------------------------------
    def _department_list(self, query: dict, body: dict) -> dict:
        return {"errcode": 0, "errmsg": "ok", "department": self.data.departments}

    def _user_list(self, query: dict, body: dict) -> dict:
        users = self._department_users(query)
        if isinstance(users, dict):
            return users
        return {"errcode": 0, "errmsg": "ok", "userlist": users}

    def _user_simplelist(self, query: dict, body: dict) -> dict:
        users = self._department_users(query)
        if isinstance(users, dict):
            return users
        # open_userid is only returned to third-party apps.
        simple = [{k: user[k] for k in ("userid", "name", "department")} for user in users]
        return {"errcode": 0, "errmsg": "ok", "userlist": simple}

    def _user_get(self, query: dict, body: dict) -> dict:
        user = self._user(query.get("userid", ""))
        if user is None:
            return _error(60111, f"userid not found: {query.get('userid', '')}")
        return {"errcode": 0, "errmsg": "ok", **user}

    # -- 客户联系: customers -----------------------------------------------------------
    def _externalcontact_get_follow_user_list(self, query: dict, body: dict) -> dict:
        follow_user = [u["userid"] for u in self.data.users if u["userid"] in self.data.follows]
        return {"errcode": 0, "errmsg": "ok", "follow_user": follow_user}

    def _externalcontact_list(self, query: dict, body: dict) -> dict:
        userid = query.get("userid", "")
        if self._user(userid) is None:
            return _error(60111, f"userid not found: {userid}")
        if userid not in self.data.follows:
            return _error(84074, "no external contact permission")
        external_userids = [f["external_userid"] for f in self.data.follows[userid]]
        if not external_userids:
            # WeCom answers a member without customers so, not with an empty list.
            return _error(84061, "not external contact")
        return {"errcode": 0, "errmsg": "ok", "external_userid": external_userids}

    def _externalcontact_get(self, query: dict, body: dict) -> dict:
        external_userid = query.get("external_userid", "")
        contact = self.data.customers.get(external_userid)
        if contact is None:
            return _error(40096, "invalid external userid")
        position = _uncursor(query.get("cursor", ""), 1)
        if position is None:
            return _bad_cursor()
        tags = self._tag_index()
        follows = self.data.follows_of(external_userid)
        start = position[0]
        page = follows[start : start + self.FOLLOW_USER_PAGE]
        follow_user = []
        for follow in page:
            info = {k: v for k, v in follow.items() if k not in ("external_userid", "tag_id")}
            info["tags"] = [
                {
                    "group_name": tags[t][0]["group_name"],
                    "tag_name": tags[t][1]["name"],
                    "tag_id": t,
                    "type": 1,
                }
                for t in follow["tag_id"]
                if t in tags
            ]
            follow_user.append(info)
        reply = {
            "errcode": 0,
            "errmsg": "ok",
            "external_contact": contact,
            "follow_user": follow_user,
        }
        if start + len(page) < len(follows):
            reply["next_cursor"] = _cursor(start + len(page))
        return reply

    def _externalcontact_batch_get_by_user(self, query: dict, body: dict) -> dict:
        userids = body.get("userid_list") or ([body["userid"]] if body.get("userid") else [])
        if not userids or len(userids) > 100:
            return _error(40058, "userid_list must hold 1 to 100 userids")
        for userid in userids:
            if userid not in self.data.follows:
                return _error(60111, f"userid not found: {userid}")
        limit = min(int(body.get("limit") or 50), 100)
        position = _uncursor(body.get("cursor", ""), 2)
        if position is None:
            return _bad_cursor()
        member, offset = position
        items = []
        while member < len(userids) and len(items) < limit:
            follows = self.data.follows[userids[member]]
            take = follows[offset : offset + limit - len(items)]
            for follow in take:
                info = {k: v for k, v in follow.items() if k != "external_userid"}
                items.append(
                    {
                        "external_contact": self.data.customers[follow["external_userid"]],
                        "follow_info": info,
                    }
                )
            offset += len(take)
            if offset >= len(follows):
                member, offset = member + 1, 0
        next_cursor = _cursor(member, offset) if member < len(userids) else ""
        return {
            "errcode": 0,
            "errmsg": "ok",
            "external_contact_list": items,
            "next_cursor": next_cursor,
        }

    def _externalcontact_remark(self, query: dict, body: dict) -> dict:
        limits = {"remark": 20, "description": 150, "remark_company": 20}
        for name, limit in limits.items():
            if len(body.get(name) or "") > limit:
                return _error(40058, f"{name} is at most {limit} characters")
        given = ("remark", "description", "remark_company", "remark_mobiles", "remark_pic_mediaid")
        if not any(body.get(name) for name in given):
            return _error(40058, "remark fields cannot all be empty")
        follow, error = self._relation(body.get("userid", ""), body.get("external_userid", ""))
        if error:
            return error
        # A field sent is written as sent (an empty remark clears it); one not sent is kept.
        for name in ("remark", "description"):
            if body.get(name) is not None:
                follow[name] = body[name]
        customer = self.data.customers[follow["external_userid"]]
        if body.get("remark_company") is not None and customer["type"] == 1:
            # A WeCom user's company is their corp's; WeCom only lets it be noted for
            # WeChat customers.
            follow["remark_corp_name"] = body["remark_company"]
        if body.get("remark_mobiles") is not None:
            mobiles = [m for m in body["remark_mobiles"] if m]  # [""] clears the list
            if mobiles:
                follow["remark_mobiles"] = mobiles
            else:
                follow.pop("remark_mobiles", None)
        return {"errcode": 0, "errmsg": "ok"}

    # -- 客户联系: corp tags --------------------------------------------------------
    def _tag_index(self) -> dict[str, tuple[dict, dict]]:
        return {tag["id"]: (group, tag) for group in self.data.tag_groups for tag in group["tag"]}

    def _live_tag_count(self) -> int:
        return sum(len(group["tag"]) for group in self.data.tag_groups)

    def _tag_or_group(self, tag_id: str) -> tuple[dict | None, str]:
        for group in self.data.tag_groups:
            if group["group_id"] == tag_id:
                return group, "tag_group"
            for tag in group["tag"]:
                if tag["id"] == tag_id:
                    return tag, "tag"
        return None, ""

    def _new_tag_group(self, name: str, order: int) -> dict:
        group = {
            "group_id": f"et{self.data.seed:04d}g{self._serial():026d}",
            "group_name": name,
            "create_time": int(self.clock()),
            "order": order,
            "tag": [],
        }
        self.data.tag_groups.append(group)
        return group

    def _new_tag(self, group: dict, name: str, order: int) -> dict:
        tag = {
            "id": f"et{self.data.seed:04d}t{self._serial():026d}",
            "name": name,
            "create_time": int(self.clock()),
            "order": order,
        }
        group["tag"].append(tag)
        return tag

    def _delete_corp_tags(self, tag_ids: set[str], group_ids: set[str]) -> None:
        """Delete tags and whole groups; a group losing its last tag goes too (WeCom has no
        empty groups). Deleted ones stay answerable by id, with deleted: true."""
        removed: set[str] = set()
        for group in list(self.data.tag_groups):
            header = {k: v for k, v in group.items() if k != "tag"}
            whole = group["group_id"] in group_ids
            doomed = [t for t in group["tag"] if whole or t["id"] in tag_ids]
            for tag in doomed:
                self.data.deleted_tags[tag["id"]] = (header, tag)
                removed.add(tag["id"])
            group["tag"] = [t for t in group["tag"] if t["id"] not in removed]
            if not group["tag"]:
                self.data.tag_groups.remove(group)
                self.data.deleted_tag_groups[group["group_id"]] = header
        for follows in self.data.follows.values():
            for follow in follows:
                if removed & set(follow["tag_id"]):
                    follow["tag_id"] = [t for t in follow["tag_id"] if t not in removed]

    def _externalcontact_get_corp_tag_list(self, query: dict, body: dict) -> dict:
        group_ids, tag_ids = body.get("group_id") or [], body.get("tag_id") or []
        if not group_ids and not tag_ids:
            return {"errcode": 0, "errmsg": "ok", "tag_group": self.data.tag_groups}
        found: dict[str, dict] = {}  # group_id → group with the matched tags
        if group_ids:  # WeCom ignores tag_id when group_id is given
            live = {g["group_id"]: g for g in self.data.tag_groups}
            for group_id in dict.fromkeys(group_ids):
                if group_id in live:
                    group = live[group_id]
                    tags = [tag | {"deleted": False} for tag in group["tag"]]
                    header, deleted = {k: v for k, v in group.items() if k != "tag"}, False
                elif group_id in self.data.deleted_tag_groups:
                    header, deleted = self.data.deleted_tag_groups[group_id], True
                    tags = [
                        tag | {"deleted": True}
                        for group, tag in self.data.deleted_tags.values()
                        if group["group_id"] == group_id
                    ]
                else:
                    continue
                found[group_id] = header | {"deleted": deleted, "tag": tags}
        else:
            live_tags = self._tag_index()
            for tag_id in dict.fromkeys(tag_ids):
                if tag_id in live_tags:
                    group, tag = live_tags[tag_id]
                    header, deleted = {k: v for k, v in group.items() if k != "tag"}, False
                elif tag_id in self.data.deleted_tags:
                    (header, tag), deleted = self.data.deleted_tags[tag_id], True
                else:
                    continue
                entry = found.setdefault(
                    header["group_id"],
                    header
                    | {"deleted": header["group_id"] in self.data.deleted_tag_groups, "tag": []},
                )
                entry["tag"].append(tag | {"deleted": deleted})
        return {"errcode": 0, "errmsg": "ok", "tag_group": list(found.values())}

    def _check_tag_name(self, name: object) -> dict | None:
        if not isinstance(name, str) or not 1 <= len(name) <= self.TAG_NAME_MAX:
            # 40072 is WeCom's "invalid tag name length" (empty or too long).
            return _error(40072, f"tag name must be 1 to {self.TAG_NAME_MAX} characters")
        return None

    def _check_order(self, body: dict) -> dict | None:
        order = body.get("order", 0)
        if not isinstance(order, int) or not 0 <= order < 2**32:
            return _error(40058, "order must be in [0, 2^32)")
        return None

    def _externalcontact_add_corp_tag(self, query: dict, body: dict) -> dict:
        wanted = body.get("tag") or []
        if not wanted:
            return _error(40058, "tag cannot be empty: WeCom has no empty tag groups")
        names: dict[str, int] = {}
        for item in wanted:
            error = self._check_tag_name(item.get("name")) or self._check_order(item)
            if error:
                return error
            names.setdefault(item["name"], item.get("order", 0))  # the same name once
        if body.get("group_id"):
            # With a group_id, group_name and the group's order are ignored.
            group = next(
                (g for g in self.data.tag_groups if g["group_id"] == body["group_id"]), None
            )
            if group is None:
                return _error(40068, "invalid tagid")
        else:
            error = self._check_tag_name(body.get("group_name")) or self._check_order(body)
            if error:
                return error
            group = next(
                (g for g in self.data.tag_groups if g["group_name"] == body["group_name"]), None
            )
        if group is not None and any(tag["name"] in names for tag in group["tag"]):
            return _error(40071, "UserTag Name Already Exist")
        if self._live_tag_count() + len(names) > self.CORP_TAG_LIMIT:
            return _error(40126, "corp tag count reached the limit of 3000")
        if group is None:
            group = self._new_tag_group(body["group_name"], body.get("order", 0))
        created = [self._new_tag(group, name, order) for name, order in names.items()]
        header = {k: v for k, v in group.items() if k != "tag"}
        return {"errcode": 0, "errmsg": "ok", "tag_group": header | {"tag": created}}

    def _externalcontact_edit_corp_tag(self, query: dict, body: dict) -> dict:
        target, tag_type = self._tag_or_group(body.get("id") or "")
        if target is None:
            return _error(40068, "invalid tagid")
        error = self._check_order(body)
        if error:
            return error
        name = body.get("name")
        if name is not None:
            error = self._check_tag_name(name)
            if error:
                return error
            if tag_type == "tag_group":
                clash = any(
                    g["group_name"] == name and g is not target for g in self.data.tag_groups
                )
            else:
                siblings = self._tag_index()[target["id"]][0]["tag"]
                clash = any(t["name"] == name and t is not target for t in siblings)
            if clash:
                return _error(40071, "UserTag Name Already Exist")
            target["group_name" if tag_type == "tag_group" else "name"] = name
        if "order" in body:
            target["order"] = body["order"]
        return {"errcode": 0, "errmsg": "ok"}

    def _externalcontact_del_corp_tag(self, query: dict, body: dict) -> dict:
        tag_ids, group_ids = set(body.get("tag_id") or []), set(body.get("group_id") or [])
        if not tag_ids and not group_ids:
            return _error(40058, "tag_id and group_id cannot both be empty")
        if tag_ids - set(self._tag_index()) or group_ids - {
            g["group_id"] for g in self.data.tag_groups
        }:
            return _error(40068, "invalid tagid")
        self._delete_corp_tags(tag_ids, group_ids)
        return {"errcode": 0, "errmsg": "ok"}

    def _externalcontact_mark_tag(self, query: dict, body: dict) -> dict:
        known = self._tag_index()
        add, remove = body.get("add_tag") or [], body.get("remove_tag") or []
        if not add and not remove:
            return _error(40058, "add_tag and remove_tag cannot both be empty")
        if any(tag not in known for tag in add + remove):
            return _error(40068, "invalid tagid")
        follow, error = self._relation(body.get("userid", ""), body.get("external_userid", ""))
        if error:
            return error
        follow["tag_id"] = sorted((set(follow["tag_id"]) | set(add)) - set(remove))
        return {"errcode": 0, "errmsg": "ok"}

    # -- 客户联系: groups ------------------------------------------------------------
    def _externalcontact_groupchat_list(self, query: dict, body: dict) -> dict:
        limit = int(body.get("limit") or 0)
        if not 1 <= limit <= 1000:
            return _error(40058, "limit must be 1 to 1000")
        status_filter = body.get("status_filter") or 0
        if status_filter not in (0, 1, 2, 3):
            return _error(40058, "status_filter must be 0 to 3")
        owners = (body.get("owner_filter") or {}).get("userid_list") or []
        if len(owners) > 100:
            return _error(40058, "owner_filter.userid_list holds at most 100 userids")
        visible = len(self.data.follows)
        if not owners and visible > self.GROUPCHAT_LIST_UNFILTERED_MEMBERS:
            return _error(81017, "request count exceeds the limit: use owner_filter")
        position = _uncursor(body.get("cursor", ""), 1)
        if position is None:
            return _bad_cursor()
        chats = [
            {"chat_id": chat_id, "status": self.data.group_status.get(chat_id, 0)}
            for chat_id, group in self.data.groups.items()
            if not owners or group["owner"] in owners
        ]
        if status_filter:
            chats = [chat for chat in chats if chat["status"] == status_filter]
        page = chats[position[0] : position[0] + limit]
        end = position[0] + len(page)
        return {
            "errcode": 0,
            "errmsg": "ok",
            "group_chat_list": page,
            "next_cursor": _cursor(end) if end < len(chats) else "",
        }

    def _externalcontact_groupchat_get(self, query: dict, body: dict) -> dict:
        group = self.data.groups.get(body.get("chat_id", ""))
        if group is None:
            return _error(40050, "chatid not found")
        return {"errcode": 0, "errmsg": "ok", "group_chat": group}

    # -- 客户联系: mass messages ------------------------------------------------------
    def _check_content(self, body: dict) -> dict | None:
        """text and attachments of a mass or welcome message, as WeCom checks them."""
        text = body.get("text") or {}
        content = text.get("content") or ""
        attachments = body.get("attachments") or []
        if not content and not attachments:
            return _error(40058, "text and attachments cannot both be empty")
        if len(content.encode()) > self.TEXT_BYTES:
            return _error(40058, f"text.content is at most {self.TEXT_BYTES} bytes")
        if len(attachments) > self.ATTACHMENTS:
            return _error(40058, f"at most {self.ATTACHMENTS} attachments")
        byte_limits = {
            "link": {"title": 128, "desc": 512, "url": 2048, "picurl": 2048},
            "miniprogram": {"title": 64},
        }
        required = {
            "image": (),
            "link": ("title", "url"),
            "miniprogram": ("title", "pic_media_id", "appid", "page"),
            "video": ("media_id",),
            "file": ("media_id",),
        }
        for attachment in attachments:
            kind = attachment.get("msgtype")
            payload = attachment.get(kind) if isinstance(kind, str) else None
            if kind not in ATTACHMENT_TYPES or not isinstance(payload, dict):
                # 41065: WeCom's "invalid attachment type" (msgtype names no payload).
                return _error(41065, "invalid attachment type")
            if kind == "image" and not (payload.get("media_id") or payload.get("pic_url")):
                return _error(40058, "image needs media_id or pic_url")
            if any(not payload.get(name) for name in required[kind]):
                return _error(40058, f"{kind} needs {', '.join(required[kind])}")
            for name, limit in byte_limits.get(kind, {}).items():
                if len(str(payload.get(name, "")).encode()) > limit:
                    return _error(40058, f"{kind}.{name} is at most {limit} bytes")
        return None

    def _externalcontact_add_msg_template(self, query: dict, body: dict) -> dict:
        return self._create_group_msg(body, creator=None)

    def _create_group_msg(self, body: dict, *, creator: str | None) -> dict:
        chat_type = body.get("chat_type") or "single"
        if chat_type not in ("single", "group"):
            return _error(40058, "chat_type must be single or group")
        sender = body.get("sender") or ""
        if sender and self._user(sender) is None:
            return _error(60111, f"userid not found: {sender}")
        error = self._check_content(body)
        if error:
            return error
        fail_list, targets = [], []
        if chat_type == "single":
            wanted = body.get("external_userid") or []
            if len(wanted) > self.MSG_TEMPLATE_CUSTOMERS:
                return _error(40058, f"at most {self.MSG_TEMPLATE_CUSTOMERS} external_userid")
            if not wanted and not sender:
                return _error(40058, "external_userid and sender cannot both be empty")
            if not wanted:  # only a sender: all of their customers
                wanted = [f["external_userid"] for f in self.data.follows.get(sender, [])]
            for external_userid in dict.fromkeys(wanted):
                follows = self.data.follows_of(external_userid)
                if sender:
                    follow = next((f for f in follows if f["userid"] == sender), None)
                else:
                    # WeCom sends to the last member who chatted with the customer; the
                    # emulator has no chats, so the member who added them last stands in.
                    follow = max(follows, key=lambda f: f["createtime"], default=None)
                if follow is None:
                    fail_list.append(external_userid)
                elif _tags_match(follow["tag_id"], body.get("tag_filter")):
                    targets.append({"userid": follow["userid"], "external_userid": external_userid})
        else:
            if not sender:
                return _error(40058, "sender is required for chat_type group")
            wanted = body.get("chat_id_list") or []
            if len(wanted) > self.MSG_TEMPLATE_CHATS:
                return _error(40058, f"at most {self.MSG_TEMPLATE_CHATS} chat_id_list")
            if not wanted:
                wanted = [c for c, g in self.data.groups.items() if g["owner"] == sender]
            for chat_id in dict.fromkeys(wanted):
                group = self.data.groups.get(chat_id)
                if group is None or group["owner"] != sender:
                    fail_list.append(chat_id)
                else:
                    targets.append({"userid": sender, "chat_id": chat_id})
        if not targets:
            return _error(41048, "no customer to send to")
        msgid = f"msg{self.data.seed:04d}{self._serial():021d}"
        self.data.group_msgs[msgid] = {
            "msgid": msgid,
            "chat_type": chat_type,
            "creator": creator,
            "create_type": 0 if creator is None else 1,
            "create_time": int(self.clock()),
            "text": body.get("text"),
            "attachments": body.get("attachments") or [],
            "tasks": {t["userid"]: {"status": 0, "send_time": None} for t in targets},
            "targets": [t | {"status": 0, "send_time": None} for t in targets],
            "reminders": [],
            "cancelled": False,
        }
        return {"errcode": 0, "errmsg": "ok", "fail_list": fail_list, "msgid": msgid}

    def _over_quota(self, key: str, now: float) -> bool:
        """Whether the customer (or group) already got its quota of mass messages."""
        day = datetime.fromtimestamp(now, BEIJING)
        policy = self.config.quota_policy
        if policy == "daily":
            period, cap = (lambda d: d.date()), 1
        elif policy == "weekly":
            period, cap = (lambda d: d.isocalendar()[:2]), 7
        elif policy == "four_per_month":
            period, cap = (lambda d: (d.year, d.month)), 4
        else:
            period, cap = (lambda d: (d.year, d.month)), calendar.monthrange(day.year, day.month)[1]
        times = self.data.received.get(key, [])
        same = sum(1 for t in times if period(datetime.fromtimestamp(t, BEIJING)) == period(day))
        return same >= cap

    def _group_msg(self, body: dict) -> tuple[dict | None, dict | None]:
        msgid = body.get("msgid")
        if not msgid:
            return None, _error(41046, "msgid missing")
        message = self.data.group_msgs.get(msgid)
        if message is None:
            return None, _error(41047, "invalid msgid")
        if self.clock() - message["create_time"] < self.config.groupmsg_dispatch_seconds:
            return None, _error(41063, "the mass message is being dispatched, try again later")
        return message, None

    def _externalcontact_get_groupmsg_list_v2(self, query: dict, body: dict) -> dict:
        chat_type = body.get("chat_type")
        if chat_type not in ("single", "group"):
            return _error(40058, "chat_type must be single or group")
        start, end = body.get("start_time"), body.get("end_time")
        if not isinstance(start, int) or not isinstance(end, int) or end < start:
            return _error(40058, "start_time and end_time are required, start before end")
        if end - start > self.GROUPMSG_LIST_SPAN:
            return _error(40058, "start_time to end_time is at most one month")
        filter_type = body.get("filter_type", 2)
        if filter_type not in (0, 1, 2):
            return _error(40058, "filter_type must be 0, 1 or 2")
        limit = _limit(body, default=50, maximum=100)
        position = _uncursor(body.get("cursor", ""), 1)
        if position is None:
            return _bad_cursor()
        messages = [
            m
            for m in self.data.group_msgs.values()
            if m["chat_type"] == chat_type
            and start <= m["create_time"] <= end
            and filter_type in (2, m["create_type"])
            and (not body.get("creator") or m["creator"] == body["creator"])
        ]
        page = messages[position[0] : position[0] + limit]
        if any(
            self.clock() - m["create_time"] < self.config.groupmsg_dispatch_seconds for m in page
        ):
            return _error(41063, "the mass message is being dispatched, try again later")
        items = []
        for message in page:
            # The official sample has create_time as a string; creator is left out for
            # messages created through the API.
            item = {"msgid": message["msgid"], "create_time": str(message["create_time"])}
            if message["creator"]:
                item["creator"] = message["creator"]
            item["create_type"] = message["create_type"]
            if message["text"]:
                item["text"] = message["text"]
            if message["attachments"]:
                item["attachments"] = message["attachments"]
            items.append(item)
        end_at = position[0] + len(page)
        return {
            "errcode": 0,
            "errmsg": "ok",
            "next_cursor": _cursor(end_at) if end_at < len(messages) else "",
            "group_msg_list": items,
        }

    def _externalcontact_get_groupmsg_task(self, query: dict, body: dict) -> dict:
        message, error = self._group_msg(body)
        if error:
            return error
        limit = _limit(body, default=500, maximum=1000)
        position = _uncursor(body.get("cursor", ""), 1)
        if position is None:
            return _bad_cursor()
        tasks = list(message["tasks"].items())
        page = tasks[position[0] : position[0] + limit]
        task_list = []
        for userid, task in page:
            item = {"userid": userid, "status": task["status"]}
            if task["send_time"]:
                item["send_time"] = task["send_time"]
            task_list.append(item)
        end = position[0] + len(page)
        return {
            "errcode": 0,
            "errmsg": "ok",
            "next_cursor": _cursor(end) if end < len(tasks) else "",
            "task_list": task_list,
        }

    def _externalcontact_get_groupmsg_send_result(self, query: dict, body: dict) -> dict:
        message, error = self._group_msg(body)
        if error:
            return error
        userid = body.get("userid")
        if not userid:
            return _error(40058, "userid is required")
        limit = _limit(body, default=500, maximum=1000)
        position = _uncursor(body.get("cursor", ""), 1)
        if position is None:
            return _bad_cursor()
        targets = [t for t in message["targets"] if t["userid"] == userid]
        if message["chat_type"] == "group":
            # The member picks the groups when sending, so WeCom lists sent ones only.
            targets = [t for t in targets if t["status"] != 0]
        page = targets[position[0] : position[0] + limit]
        send_list = []
        for target in page:
            key = "external_userid" if message["chat_type"] == "single" else "chat_id"
            item = {key: target[key], "userid": userid, "status": target["status"]}
            if target["status"] == 1:
                item["send_time"] = target["send_time"]
            send_list.append(item)
        end = position[0] + len(page)
        return {
            "errcode": 0,
            "errmsg": "ok",
            "next_cursor": _cursor(end) if end < len(targets) else "",
            "send_list": send_list,
        }

    def _externalcontact_remind_groupmsg_send(self, query: dict, body: dict) -> dict:
        message, error = self._group_msg(body)
        if error:
            return error
        now = self.clock()
        recent = [t for t in message["reminders"] if now - t < 86400]
        if len(recent) >= self.REMINDS_PER_DAY:
            # WeCom names no errcode for this cap; 45009 is its global "接口调用超过限制"
            # (calls over a limit), which a 4th reminder within 24 h is, where 40058 would
            # claim a bad parameter. (45009 is retried by the gateway, to no avail.)
            return _error(45009, "remind at most 3 times per msgid in 24 hours")
        message["reminders"] = [*recent, now]
        return {"errcode": 0, "errmsg": "ok"}

    def _externalcontact_cancel_groupmsg_send(self, query: dict, body: dict) -> dict:
        message, error = self._group_msg(body)
        if error:
            return error
        message["cancelled"] = True  # unsent tasks stay 0 and can no longer be sent
        return {"errcode": 0, "errmsg": "ok"}

    # -- 客户联系: welcome messages ---------------------------------------------------
    def _externalcontact_send_welcome_msg(self, query: dict, body: dict) -> dict:
        code = body.get("welcome_code")
        if not code:
            return _error(41049, "welcome_code missing")
        error = self._check_content(body)
        if error:
            return error
        issued = self.data.welcome_codes.get(code)
        # WeCom's global codes: 41050 "invalid welcome code" (unknown, or past its 20 s:
        # "须在添加好友后20秒内使用"), 41051 once used (the chat has started).
        if issued is None:
            return _error(41050, "invalid welcome_code")
        if issued["used"]:
            return _error(41051, "externaluser has started chatting")
        if self.clock() - issued["issued_at"] > self.WELCOME_CODE_SECONDS:
            return _error(41050, "invalid welcome_code: valid for 20 s after the add")
        issued["used"] = True
        self.data.welcome_messages.append(
            {
                "welcome_code": code,
                "userid": issued["userid"],
                "external_userid": issued["external_userid"],
                "text": body.get("text"),
                "attachments": body.get("attachments") or [],
                "sent_at": self.clock(),
            }
        )
        return {"errcode": 0, "errmsg": "ok"}

    # -- 客户联系: 「联系我」 contact ways -----------------------------------------------
    def _way_members(self, users: list[str], parties: list[int]) -> list[str]:
        departments: set[int] = set()
        for party in parties:
            departments |= self._department_ids(party, True)
        members = list(users) + [
            u["userid"] for u in self.data.users if set(u["department"]) & departments
        ]
        return list(dict.fromkeys(members))

    def _check_way(self, way_type: int, body: dict, users: list, parties: list) -> dict | None:
        for name in ("state", "remark"):
            if len(body.get(name) or "") > 30:
                return _error(40058, f"{name} is at most 30 characters")
        if way_type == 1 and (len(users) != 1 or parties):
            return _error(40058, "type 1 (single) takes exactly one user and no party")
        if way_type == 2 and not users and not parties:
            return _error(40058, "user and party cannot both be empty")
        for userid in users:
            if self._user(userid) is None:
                return _error(60111, f"userid not found: {userid}")
        known = {d["id"] for d in self.data.departments}
        for party in parties:
            if party not in known:
                return _error(60123, "invalid party id")
        if len(self._way_members(users, parties)) > self.CONTACT_WAY_MEMBERS:
            return _error(41041, "a contact way has at most 100 members, departments expanded")
        return None

    def _contact_way(self, body: dict) -> tuple[dict | None, dict | None]:
        config_id = body.get("config_id")
        if not config_id:
            return None, _error(41043, "config_id missing")
        way = self.data.contact_ways.get(config_id)
        if way is None:
            return None, _error(41044, "invalid config_id")
        return way, None

    def _externalcontact_add_contact_way(self, query: dict, body: dict) -> dict:
        if "type" not in body:
            return _error(41037, "type missing")
        if "scene" not in body:
            return _error(41038, "scene missing")
        way_type, scene = body["type"], body["scene"]
        if way_type not in (1, 2):
            return _error(41039, "invalid type")
        if scene not in (1, 2):
            return _error(41040, "invalid scene")
        users, parties = body.get("user") or [], body.get("party") or []
        error = self._check_way(way_type, body, users, parties)
        if error:
            return error
        is_temp = bool(body.get("is_temp"))
        if is_temp and way_type != 1:
            return _error(40058, "a temporary chat way is single-member only")
        # Temporary-chat ways are outside the 500,000 (WeCom caps them per day instead).
        if not is_temp and (
            sum(not w["is_temp"] for w in self.data.contact_ways.values()) >= self.CONTACT_WAY_LIMIT
        ):
            return _error(41045, "contact ways added through the API reached the limit")
        config_id = _member_version(self.data.seed, "contact_way", self._serial())
        way = {
            "config_id": config_id,
            "type": way_type,
            "scene": scene,
            "remark": body.get("remark") or "",
            "skip_verify": body.get("skip_verify", True),
            "state": body.get("state") or "",
            "user": users,
            "party": parties,
            "is_temp": is_temp,
        }
        if body.get("style") is not None:
            way["style"] = body["style"]
        for name in ("expires_in", "chat_expires_in", "unionid", "conclusions"):
            if is_temp and body.get(name) is not None:
                way[name] = body[name]
        reply = {"errcode": 0, "errmsg": "ok", "config_id": config_id}
        if scene == 2:  # a QR code only for scene 2
            way["qr_code"] = f"https://wework.qpic.cn/wwpic/{config_id}/0"
            reply["qr_code"] = way["qr_code"]
        self.data.contact_ways[config_id] = way
        return reply

    def _externalcontact_get_contact_way(self, query: dict, body: dict) -> dict:
        way, error = self._contact_way(body)
        if error:
            return error
        return {"errcode": 0, "errmsg": "ok", "contact_way": way}

    def _externalcontact_update_contact_way(self, query: dict, body: dict) -> dict:
        way, error = self._contact_way(body)
        if error:
            return error
        # user and party each replace the old list when sent.
        users = body["user"] if body.get("user") is not None else way["user"]
        parties = body["party"] if body.get("party") is not None else way["party"]
        error = self._check_way(way["type"], body, users, parties)
        if error:
            return error
        way["user"], way["party"] = users, parties
        for name in ("remark", "skip_verify", "style", "state"):
            if body.get(name) is not None:
                way[name] = body[name]
        for name in ("expires_in", "chat_expires_in", "unionid", "conclusions"):
            if way["is_temp"] and body.get(name) is not None:
                way[name] = body[name]
        return {"errcode": 0, "errmsg": "ok"}

    def _externalcontact_del_contact_way(self, query: dict, body: dict) -> dict:
        way, error = self._contact_way(body)
        if error:
            return error
        del self.data.contact_ways[way["config_id"]]
        return {"errcode": 0, "errmsg": "ok"}

    # -- OAuth: the member signed in to the WeCom client opens an app page -----------
    OAUTH_CODE_SECONDS = 300  # WeCom: a code is valid 5 minutes, once

    def _oauth_authorize(self, query: dict, start_response):
        """WeCom's authorize page: it knows who is signed in to the client and sends the
        browser back with a one-time code. The emulator takes that member from
        `emulator_userid` (the first member by default)."""
        redirect_uri = query.get("redirect_uri", "")
        if query.get("appid") != self.config.corp_id or not redirect_uri:
            start_response("400 Bad Request", [("Content-Type", "text/plain; charset=utf-8")])
            return ["参数错误：appid 或 redirect_uri".encode()]
        userid = query.get("emulator_userid") or self.data.users[0]["userid"]
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.data.oauth_codes[code] = {"userid": userid, "issued_at": self.clock()}
        separator = "&" if "?" in redirect_uri else "?"
        location = (
            f"{redirect_uri}{separator}{urlencode({'code': code, 'state': query.get('state', '')})}"
        )
        start_response("302 Found", [("Location", location)])
        return [b""]

    def _auth_getuserinfo(self, query: dict, body: dict) -> dict:
        code = query.get("code", "")
        issued = self.data.oauth_codes.pop(code, None)
        if issued is None or self.clock() - issued["issued_at"] > self.OAUTH_CODE_SECONDS:
            return _error(40029, "invalid code")
        userid = issued["userid"]
        if not any(user["userid"] == userid for user in self.data.users):
            # Someone outside the corp: WeCom answers with an openid instead.
            return {"errcode": 0, "errmsg": "ok", "openid": f"o{userid}"}
        return {"errcode": 0, "errmsg": "ok", "userid": userid, "user_ticket": ""}

    # -- app messages to staff -----------------------------------------------------
    def _message_send(self, query: dict, body: dict) -> dict:
        agentid = body.get("agentid")
        if agentid in (None, ""):
            return _error(41011, "agentid missing")
        if int(agentid) != self.config.agent_id:
            # 301002: the agentid is not the app whose token is used.
            return _error(301002, "no privilege to access/modify this agent")
        msgtype = body.get("msgtype")
        if msgtype not in APP_MESSAGE_TYPES or not isinstance(body.get(msgtype), dict):
            return _error(40008, "invalid message type")
        if msgtype == "text":
            content = body["text"].get("content") or ""
            if not content:
                return _error(44004, "text content is empty")
            if len(content.encode()) > 2048:
                return _error(45002, "text content is at most 2048 bytes")
        to_users = [u for u in (body.get("touser") or "").split("|") if u]
        to_parties = [p for p in str(body.get("toparty") or "").split("|") if p]
        to_tags = [t for t in str(body.get("totag") or "").split("|") if t]
        if not to_users and not to_parties and not to_tags:
            return _error(82001, "touser, toparty and totag cannot all be empty")
        known = [u["userid"] for u in self.data.users]
        if "@all" in to_users:
            recipients, invalid_users = list(known), []
        else:
            recipients = [u for u in to_users if u in known]
            invalid_users = [u for u in to_users if u not in known]
        departments = {str(d["id"]) for d in self.data.departments}
        invalid_parties = [p for p in to_parties if p not in departments]
        for party in to_parties:
            if party in departments:
                ids = self._department_ids(int(party), True)
                recipients += [u["userid"] for u in self.data.users if set(u["department"]) & ids]
        # Member tags (通讯录标签) are not emulated: every tag is unknown.
        if not recipients:
            return _error(81013, "user & party & tag all invalid")
        now = self.clock()
        for userid in dict.fromkeys(recipients):
            times = [t for t in self.data.app_message_times.get(userid, []) if now - t < 3600]
            last_minute = sum(1 for t in times if now - t < 60)
            if (
                last_minute >= self.APP_MESSAGES_PER_MINUTE
                or len(times) >= self.APP_MESSAGES_PER_HOUR
            ):
                continue  # over the member's cap: WeCom drops it without an error
            self.data.app_message_times[userid] = [*times, now]
            self.data.app_messages.append(
                {
                    "userid": userid,
                    "agentid": self.config.agent_id,
                    "msgtype": msgtype,
                    msgtype: body[msgtype],
                    "sent_at": now,
                }
            )
        reply = {
            "errcode": 0,
            "errmsg": "ok",
            "invaliduser": "|".join(invalid_users),
            "invalidparty": "|".join(invalid_parties),
            "invalidtag": "|".join(to_tags),
            "unlicenseduser": "",
            "msgid": secrets.token_urlsafe(24),
        }
        if msgtype == "template_card":
            reply["response_code"] = secrets.token_urlsafe(24)  # to update the card later
        return reply


def _tags_match(tag_ids: list[str], tag_filter: dict | None) -> bool:
    """add_msg_template's tag_filter: any tag of each group_list entry, every entry."""
    if not tag_filter:
        return True
    return all(
        set(entry.get("tag_list") or []) & set(tag_ids)
        for entry in tag_filter.get("group_list") or []
    )


def _limit(body: dict, *, default: int, maximum: int) -> int:
    """WeCom's "超过最大值时取默认值": a limit over the maximum (or none) is the default."""
    limit = body.get("limit")
    if not isinstance(limit, int) or not 1 <= limit <= maximum:
        return default
    return limit


def _error(code: int, message: str) -> dict:
    return {
        "errcode": code,
        "errmsg": f"{message}, more info at https://open.work.weixin.qq.com/devtool/query?e={code}",
    }


def _bad_cursor() -> dict:
    return _error(50100, "invalid cursor")  # WeCom's "分页查询的游标无效"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


@dataclass
class Served:
    server: WSGIServer
    thread: threading.Thread

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/cgi-bin/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_in_thread(emulator: WeComEmulator, host: str = "127.0.0.1", port: int = 0) -> Served:
    server = make_server(
        host, port, emulator, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return Served(server, thread)
