"""A local WeCom (企业微信) for tests and the demo: WeCom's paths, JSON shapes and errcodes.

Serves the 客户联系 read APIs the sync uses (gettoken, department/list,
user/list, get_follow_user_list, externalcontact/get, batch/get_by_user,
get_corp_tag_list, groupchat/list, groupchat/get) and mark_tag, over real
HTTP, in memory, from a seeded generator: the same seed gives the same data.
Errors answer as WeCom does: HTTP 200 with errcode (41001, 40014, 42001,
40013, 40001, 40058, 40096, 84061, 40068, 45009 past the per-second limit).
API calls raise no callbacks, as in WeCom.

Simulated user actions (a customer adds or deletes a guide, a guide deletes a
customer or edits a remark) change the data and push a signed, encrypted
callback to `callback_url`, as Python methods and as POST
/_emulator/actions/<name>. What it does not do yet: mass messages, welcome
messages and contact ways (see docs/ARCHITECTURE.md).
"""

import base64
import json
import random
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs, urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

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


@dataclass
class Config:
    corp_id: str = "ww5f1e2d3c4b5a6978"
    secrets: tuple[str, ...] = (
        "dev-contact-secret-0123456789abcdef",
        "dev-agent-secret-0123456789abcdef",
    )
    token_ttl: int = 7200
    qps_limit: int = 0  # calls per second per API path; 0 = off (WeCom: 10,000/min)
    latency: float = 0.0  # seconds added to every answer, as over a real network
    callback_url: str = ""  # where simulated user actions deliver their callbacks
    callback_token: str = "DevCallbackToken2026"  # noqa: S105 - the emulator's own
    callback_aes_key: str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


@dataclass
class WeComData:
    departments: list[dict] = field(default_factory=list)
    users: list[dict] = field(default_factory=list)
    customers: dict[str, dict] = field(default_factory=dict)  # external_userid → contact
    # userid → list of follow_info dicts (one per relation), in a fixed order
    follows: dict[str, list[dict]] = field(default_factory=dict)
    tag_groups: list[dict] = field(default_factory=list)
    groups: dict[str, dict] = field(default_factory=dict)

    def follows_of(self, external_userid: str) -> list[dict]:
        """The relations of one customer, from an index built on first use (rebuilt when
        the number of relations changed since)."""
        total = sum(len(follows) for follows in self.follows.values())
        if getattr(self, "_index_size", None) != total:
            index: dict[str, list[dict]] = {}
            for follows in self.follows.values():
                for follow in follows:
                    index.setdefault(follow["external_userid"], []).append(follow)
            self._index, self._index_size = index, total
        return self._index.get(external_userid, [])


def generate(*, seed: int, guides: int, customers: int) -> WeComData:
    """A brand: stores of about eight guides, customers followed by one to three guides."""
    rng = random.Random(seed)  # noqa: S311 - fake data
    data = WeComData()
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
    now = 1_790_000_000  # 2026-09
    userids = [user["userid"] for user in data.users]
    for number in range(customers):
        external_userid = f"wm{seed:04d}{number:026d}"
        is_wechat = rng.random() < 0.95
        contact = {
            "external_userid": external_userid,
            "name": rng.choice(SURNAMES)
            + rng.choice(GIVEN)
            + (rng.choice(GIVEN) if rng.random() < 0.6 else ""),
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
            "member_version": secrets.token_hex(16),
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
    return numbers if isinstance(numbers, list) and len(numbers) == size else None


class WeComEmulator:
    """The emulated corp: tokens, data, call counts. Thread-safe."""

    def __init__(self, data: WeComData, config: Config | None = None, clock=time.time) -> None:
        self.data = data
        self.config = config or Config()
        self.clock = clock
        self.lock = threading.Lock()
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

    def guide_edits_remark(self, external_userid: str, userid: str, remark: str) -> int:
        """The guide edits the remark in the client: edit_external_contact."""
        with self.lock:
            for follow in self.data.follows[userid]:
                if follow["external_userid"] == external_userid:
                    follow["remark"] = remark
        return self.deliver(
            "change_external_contact", "edit_external_contact", userid, external_userid
        )

    def customer_adds_guide(self, external_userid: str, userid: str, state: str = "") -> int:
        """A customer (existing or new) adds a guide, e.g. by scanning a channel code."""
        with self.lock:
            if external_userid not in self.data.customers:
                self.data.customers[external_userid] = {
                    "external_userid": external_userid,
                    "name": "新客户",
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
                "oper_userid": external_userid,
                "add_way": 1,
            }
            if state:
                follow["state"] = state
            self.data.follows[userid].append(follow)
        return self.deliver(
            "change_external_contact",
            "add_external_contact",
            userid,
            external_userid,
            State=state,
            WelcomeCode=secrets.token_urlsafe(16),
        )

    def random_action(self, rng: random.Random) -> int:
        """One plausible user action, for a steady stream of callbacks (demo, load tests)."""
        userid = rng.choice(list(self.data.follows))
        follows = self.data.follows[userid]
        roll = rng.random()
        if roll < 0.5 or not follows:
            return self.customer_adds_guide(
                f"wmnew{rng.getrandbits(64):026x}", userid, rng.choice(STATES)
            )
        external_userid = rng.choice(follows)["external_userid"]
        if roll < 0.75:
            return self.guide_edits_remark(external_userid, userid, f"备注{rng.randrange(100)}")
        if roll < 0.9:
            return self.customer_deletes_guide(external_userid, userid)
        return self.guide_deletes_customer(external_userid, userid)

    def _drop_relation(self, external_userid: str, userid: str) -> None:
        with self.lock:
            self.data.follows[userid] = [
                f for f in self.data.follows[userid] if f["external_userid"] != external_userid
            ]

    def deliver(
        self, event: str, change_type: str, userid: str, external_userid: str, **extra
    ) -> int:
        """Encrypt and sign the event as WeCom does and POST it to the callback URL; WeCom
        tries three times in all when the answer is not 200 within 5 s. Returns the status."""
        if not self.config.callback_url:
            return 0
        fields = {
            "ToUserName": self.config.corp_id,
            "FromUserName": "sys",
            "CreateTime": str(int(self.clock())),
            "MsgType": "event",
            "Event": event,
            "ChangeType": change_type,
            "UserID": userid,
            "ExternalUserID": external_userid,
            **{k: v for k, v in extra.items() if v},
        }
        plain = (
            "<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items()) + "</xml>"
        )
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
        "customer_adds_guide",
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
            status = getattr(self, name)(**arguments)
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps({"callback_status": status}).encode()]
        path = raw_path.removeprefix("/cgi-bin/")
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        body = {}
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = None
        reply = self.handle(path, query, body)
        payload = json.dumps(reply, ensure_ascii=False).encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", str(len(payload))),
            ],
        )
        return [payload]

    def handle(self, path: str, query: dict, body: dict | None) -> dict:
        if self.config.latency:
            time.sleep(self.config.latency)
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
        with self.lock:
            known = self.tokens.get(token)
        if known is None:
            return _error(40014, "invalid access_token")
        if known[1] <= self.clock():
            return _error(42001, "access_token expired")
        if body is None:
            return _error(47001, "data format error")
        handler = getattr(self, "_" + path.replace("/", "_"), None)
        if handler is None:
            return _error(404, f"api not found: {path}")
        return handler(query, body)

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

    def _department_list(self, query, body) -> dict:
        return {"errcode": 0, "errmsg": "ok", "department": self.data.departments}

    def _user_list(self, query, body) -> dict:
        return {"errcode": 0, "errmsg": "ok", "userlist": self.data.users}

    def _externalcontact_get_follow_user_list(self, query, body) -> dict:
        return {"errcode": 0, "errmsg": "ok", "follow_user": [u["userid"] for u in self.data.users]}

    def _externalcontact_get(self, query, body) -> dict:
        external_userid = query.get("external_userid", "")
        contact = self.data.customers.get(external_userid)
        if contact is None:
            return _error(40096, "invalid external userid")
        follow_user = []
        for follow in self.data.follows_of(external_userid):
            info = {k: v for k, v in follow.items() if k not in ("external_userid", "tag_id")}
            info["tags"] = [{"tag_id": t, "type": 1} for t in follow["tag_id"]]
            follow_user.append(info)
        return {
            "errcode": 0,
            "errmsg": "ok",
            "external_contact": contact,
            "follow_user": follow_user,
        }

    def _externalcontact_batch_get_by_user(self, query, body) -> dict:
        userids = body.get("userid_list") or ([body["userid"]] if body.get("userid") else [])
        if not userids or len(userids) > 100:
            return _error(40058, "userid_list must hold 1 to 100 userids")
        for userid in userids:
            if userid not in self.data.follows:
                return _error(60111, f"userid not found: {userid}")
        limit = min(int(body.get("limit") or 50), 100)
        position = _uncursor(body.get("cursor", ""), 2)
        if position is None:
            return _error(40058, "invalid cursor")
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

    def _externalcontact_get_corp_tag_list(self, query, body) -> dict:
        return {"errcode": 0, "errmsg": "ok", "tag_group": self.data.tag_groups}

    def _externalcontact_mark_tag(self, query, body) -> dict:
        known = {tag["id"] for group in self.data.tag_groups for tag in group["tag"]}
        add, remove = body.get("add_tag") or [], body.get("remove_tag") or []
        if not add and not remove:
            return _error(40058, "add_tag and remove_tag cannot both be empty")
        if any(tag not in known for tag in add + remove):
            return _error(40068, "invalid tagid")
        for follow in self.data.follows.get(body.get("userid", ""), []):
            if follow["external_userid"] == body.get("external_userid"):
                with self.lock:
                    follow["tag_id"] = sorted((set(follow["tag_id"]) | set(add)) - set(remove))
                return {"errcode": 0, "errmsg": "ok"}
        return _error(84061, "not external contact")

    def _externalcontact_groupchat_list(self, query, body) -> dict:
        limit = int(body.get("limit") or 0)
        if not 1 <= limit <= 1000:
            return _error(40058, "limit must be 1 to 1000")
        position = _uncursor(body.get("cursor", ""), 1)
        if position is None:
            return _error(40058, "invalid cursor")
        chat_ids = list(self.data.groups)
        page = chat_ids[position[0] : position[0] + limit]
        end = position[0] + len(page)
        return {
            "errcode": 0,
            "errmsg": "ok",
            "group_chat_list": [{"chat_id": c, "status": 0} for c in page],
            "next_cursor": _cursor(end) if end < len(chat_ids) else "",
        }

    def _externalcontact_groupchat_get(self, query, body) -> dict:
        group = self.data.groups.get(body.get("chat_id", ""))
        if group is None:
            return _error(40050, "chatid not found")
        return {"errcode": 0, "errmsg": "ok", "group_chat": group}


def _error(code: int, message: str) -> dict:
    return {
        "errcode": code,
        "errmsg": f"{message}, more info at https://open.work.weixin.qq.com/devtool/query?e={code}",
    }


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
