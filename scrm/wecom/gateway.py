"""The WeCom gateway: every call the platform makes to WeCom goes through here.

Built on wechatpy's WeCom client (`wechatpy.enterprise`, 1.8.x) with the API
base from settings (`WECOM_API_BASE`: WeCom's own in production, the bundled
emulator in tests and the demo). On top of it:

- the access token lives in Redis, shared by every process, one per corp and
  secret; on 40014/42001 it is refreshed once and the call retried once;
  concurrent refreshes take a Redis lock, and whoever waited re-reads the
  token instead of fetching another (no stampede);
- a token bucket in Redis per corp and API path keeps us under WeCom's
  frequency limits; calls wait for a token rather than fail;
- -1 (busy), 45009 and 45033 (frequency) are retried with exponential backoff,
  a bounded number of times; every other errcode raises `WeComError`;
- every call is logged with its path, duration and errcode (never the token).
"""

import logging
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from wechatpy.enterprise import WeChatClient
from wechatpy.exceptions import WeChatClientException
from wechatpy.session.redisstorage import RedisStorage

logger = logging.getLogger(__name__)

TOKEN_ERRORS = {40014, 42001}
TRANSIENT_ERRORS = {-1, 45009, 45033}
MAX_RETRIES = 5
BACKOFF_SECONDS = 0.2  # doubled after every retry: 0.2, 0.4, 0.8, 1.6, 3.2 s

# KEYS[1] bucket; ARGV: rate per second, capacity, now (s). Returns seconds to wait.
_TOKEN_BUCKET = """
local tokens = tonumber(redis.call('HGET', KEYS[1], 't') or ARGV[2])
local stamp = tonumber(redis.call('HGET', KEYS[1], 's') or ARGV[3])
local rate, capacity, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
tokens = math.min(capacity, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens < 1 then wait = (1 - tokens) / rate end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 't', tokens, 's', now)
redis.call('EXPIRE', KEYS[1], 60)
return tostring(wait)
"""  # noqa: S105 - a Lua script, not a password


class WeComError(Exception):
    """WeCom answered with a non-zero errcode (kept, with its errmsg and the API path)."""

    def __init__(self, errcode: int | None, errmsg: str, api: str) -> None:
        super().__init__(f"WeCom {api}: {errcode} {errmsg}")
        self.errcode, self.errmsg, self.api = errcode, errmsg, api


@dataclass(frozen=True)
class Credentials:
    corp_id: str
    secret: str


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


class _Client(WeChatClient):
    """wechatpy's client, pointed at WECOM_API_BASE for API calls and token fetches alike."""

    def __init__(self, corp_id: str, secret: str, *, base_url: str, session) -> None:
        self.API_BASE_URL = base_url.rstrip("/") + "/"
        super().__init__(corp_id, secret, session=session, timeout=10, auto_retry=False)

    def fetch_access_token(self):
        return self._fetch_access_token(
            url=self.API_BASE_URL + "gettoken",
            params={"corpid": self.corp_id, "corpsecret": self.secret},
        )


class WeComGateway:
    def __init__(self, credentials: Credentials, *, base_url: str | None = None) -> None:
        self.redis = _redis()
        self.credentials = credentials
        self.client = _Client(
            credentials.corp_id,
            credentials.secret,
            base_url=base_url or settings.WECOM_API_BASE,
            session=RedisStorage(self.redis, prefix="wecom"),
        )
        self.api_calls = 0  # HTTP calls made by this gateway, token fetches included
        self.agent_id: int | None = None  # set for the self-built app (for_app)
        self._bucket = self.redis.register_script(_TOKEN_BUCKET)

    @classmethod
    def from_settings(cls) -> "WeComGateway":
        """The 客户联系 app, with the setup page's credentials if saved, else the settings'."""
        from scrm.wecom.credentials import current

        credentials = current()
        return cls(Credentials(credentials.corp_id, credentials.contact_secret))

    @classmethod
    def for_app(cls) -> "WeComGateway":
        """The self-built app (its own secret and token): app messages to staff."""
        from scrm.wecom.credentials import current

        credentials = current()
        gateway = cls(Credentials(credentials.corp_id, credentials.agent_secret))
        gateway.agent_id = credentials.agent_id
        return gateway

    # -- the one way every call is made -------------------------------------------

    def fetch_token(self) -> None:
        """Fetch a fresh access token now (the setup page's first check)."""
        self._refresh_token(self._token())

    def _token(self) -> str | None:
        return self.client.session.get(self.client.access_token_key)

    def _refresh_token(self, stale: str | None) -> None:
        key = self.client.access_token_key
        with self.redis.lock(f"wecom:token-lock:{key}", timeout=30, blocking_timeout=30):
            if self._token() not in (None, stale):
                return  # another process refreshed it while we waited
            for retry in range(MAX_RETRIES + 1):
                self.api_calls += 1
                started = time.monotonic()
                try:
                    self.client.fetch_access_token()
                    return
                except WeChatClientException as error:
                    if error.errcode not in TRANSIENT_ERRORS or retry == MAX_RETRIES:
                        raise WeComError(error.errcode, error.errmsg or "", "gettoken") from error
                    time.sleep(BACKOFF_SECONDS * 2**retry)
                finally:
                    logger.info("wecom gettoken %.0f ms", (time.monotonic() - started) * 1000)

    def _wait_for_rate(self, api: str) -> None:
        rate = settings.WECOM_RATE_PER_SECOND
        key = f"wecom:rate:{self.credentials.corp_id}:{api}"
        wait = float(self._bucket(keys=[key], args=[rate, rate, time.time()]))
        if wait > 0:
            time.sleep(wait)

    def call(self, method: str, api: str, *, params: dict | None = None, data: dict | None = None):
        if self._token() is None:
            self._refresh_token(None)
        refreshed, retries = False, 0
        while True:
            self._wait_for_rate(api)
            token = self._token()
            started = time.monotonic()
            errcode, errmsg, result = 0, "ok", None
            try:
                self.api_calls += 1
                result = self.client._request(
                    method,
                    api,
                    params=dict(params or {}),
                    data=dict(data) if data is not None else None,
                )
            except WeChatClientException as error:
                errcode, errmsg = error.errcode, error.errmsg or ""
            logger.info(
                "wecom %s %s errcode=%s %.0f ms",
                method,
                api,
                errcode,
                (time.monotonic() - started) * 1000,
            )
            if not errcode:
                return result
            if errcode in TOKEN_ERRORS and not refreshed:
                refreshed = True
                self._refresh_token(token)
                continue
            if errcode in TRANSIENT_ERRORS and retries < MAX_RETRIES:
                time.sleep(BACKOFF_SECONDS * 2**retries)
                retries += 1
                continue
            raise WeComError(errcode, errmsg, api)

    # -- the APIs the platform uses -------------------------------------------------

    def department_list(self) -> list[dict]:
        return self.call("get", "department/list")["department"]

    def user_list(self, *, department_id: int) -> list[dict]:
        params = {"department_id": department_id, "fetch_child": 1}
        return self.call("get", "user/list", params=params)["userlist"]

    def user_get(self, userid: str) -> dict:
        return self.call("get", "user/get", params={"userid": userid})

    def follow_user_list(self) -> list[str]:
        return self.call("get", "externalcontact/get_follow_user_list")["follow_user"]

    def batch_get_by_user(self, userids: list[str], *, cursor: str = "", limit: int = 100):
        result = self.call(
            "post",
            "externalcontact/batch/get_by_user",
            data={"userid_list": userids, "cursor": cursor, "limit": limit},
        )
        return result.get("external_contact_list", []), result.get("next_cursor", "")

    def external_contact_get(self, external_userid: str) -> dict:
        """The contact with every follow_user page merged."""
        params = {"external_userid": external_userid}
        result = self.call("get", "externalcontact/get", params=params)
        follow_user = list(result.get("follow_user", []))
        while result.get("next_cursor"):
            result = self.call(
                "get", "externalcontact/get", params={**params, "cursor": result["next_cursor"]}
            )
            follow_user += result.get("follow_user", [])
        return {"external_contact": result["external_contact"], "follow_user": follow_user}

    def corp_tag_list(self) -> list[dict]:
        return self.call("post", "externalcontact/get_corp_tag_list", data={})["tag_group"]

    def groupchat_list(self, *, owners: list[str], cursor: str = "", limit: int = 1000):
        """Groups owned by these members (≤ 100), a page at a time."""
        data = {
            "status_filter": 0,
            "owner_filter": {"userid_list": owners},
            "cursor": cursor,
            "limit": limit,
        }
        result = self.call("post", "externalcontact/groupchat/list", data=data)
        return result.get("group_chat_list", []), result.get("next_cursor", "")

    def groupchat_get(self, chat_id: str) -> dict:
        data = {"chat_id": chat_id, "need_name": 1}
        return self.call("post", "externalcontact/groupchat/get", data=data)["group_chat"]

    def mark_tag(
        self, *, userid: str, external_userid: str, add: list[str], remove: list[str]
    ) -> None:
        data = {
            "userid": userid,
            "external_userid": external_userid,
            "add_tag": add,
            "remove_tag": remove,
        }
        self.call("post", "externalcontact/mark_tag", data=data)

    def corp_tag_add(self, *, group_name: str, names: list[str]) -> dict:
        """Add tags to the corp tag group of that name (WeCom creates it when missing, and
        reuses it when it exists); returns the group with the tags created."""
        data = {"group_name": group_name, "tag": [{"name": name} for name in names]}
        return self.call("post", "externalcontact/add_corp_tag", data=data)["tag_group"]

    def add_msg_template(
        self, *, sender: str, external_userids: list[str], text: str, attachments: list[dict]
    ) -> dict:
        """A 1:1 mass-message task for one guide's customers; nothing is sent until the
        guide confirms in WeCom. Returns {"msgid", "fail_list"}."""
        data = {"chat_type": "single", "sender": sender, "external_userid": external_userids}
        if text:
            data["text"] = {"content": text}
        if attachments:
            data["attachments"] = attachments
        result = self.call("post", "externalcontact/add_msg_template", data=data)
        return {"msgid": result.get("msgid", ""), "fail_list": result.get("fail_list", [])}

    def add_group_msg_template(
        self, *, sender: str, chat_ids: list[str], text: str, attachments: list[dict]
    ) -> dict:
        """A mass-message task to customer groups (chat_type group) for their owner, who
        confirms it in WeCom; `chat_ids` ≤ 2,000 of the sender's own groups. Returns
        {"msgid", "fail_list"} (fail_list: chat ids WeCom would not send to)."""
        data = {"chat_type": "group", "sender": sender, "chat_id_list": chat_ids}
        if text:
            data["text"] = {"content": text}
        if attachments:
            data["attachments"] = attachments
        result = self.call("post", "externalcontact/add_msg_template", data=data)
        return {"msgid": result.get("msgid", ""), "fail_list": result.get("fail_list", [])}

    def groupmsg_send_result(self, *, msgid: str, userid: str) -> list[dict]:
        """Per customer (or group: `chat_id`): status 0 not sent, 1 sent, 2 not a friend
        (the group is gone), 3 over WeCom's limit."""
        rows, cursor = [], ""
        while True:
            result = self.call(
                "post",
                "externalcontact/get_groupmsg_send_result",
                data={"msgid": msgid, "userid": userid, "limit": 1000, "cursor": cursor},
            )
            rows += result.get("send_list", [])
            cursor = result.get("next_cursor", "")
            if not cursor:
                return rows

    def message_send(self, *, userids: list[str], text: str) -> dict:
        """An app message to staff (guides, store managers); needs the app's gateway."""
        data = {
            "touser": "|".join(userids),
            "msgtype": "text",
            "agentid": self.agent_id,
            "text": {"content": text},
        }
        return self.call("post", "message/send", data=data)

    def add_contact_way(self, *, userids: list[str], state: str, remark: str) -> dict:
        """A 「联系我」 QR code for these members (type 2, so the member list can change later;
        WeCom hands each add to one of them). Returns {"config_id", "qr_code"}."""
        data = {
            "type": 2,
            "scene": 2,
            "state": state,
            "remark": remark[:30],
            "skip_verify": True,
            "user": userids,
        }
        result = self.call("post", "externalcontact/add_contact_way", data=data)
        return {"config_id": result["config_id"], "qr_code": result.get("qr_code", "")}

    def update_contact_way(self, *, config_id: str, userids: list[str]) -> None:
        data = {"config_id": config_id, "user": userids}
        self.call("post", "externalcontact/update_contact_way", data=data)

    def send_welcome_msg(self, *, welcome_code: str, text: str, attachments: list[dict]) -> None:
        """The welcome message of a new contact; the code is valid 20 s, once."""
        data: dict = {"welcome_code": welcome_code}
        if text:
            data["text"] = {"content": text}
        if attachments:
            data["attachments"] = attachments
        self.call("post", "externalcontact/send_welcome_msg", data=data)
