"""The admin's WeCom setup page: enter the corp's credentials once, check each one live.

Connecting a corp is where SCRM users most often get stuck (secrets, trusted
IP, callback URL verification); each check names WeCom's exact error and what
to do about it.
"""

import secrets
import time
from urllib.parse import urlencode

import requests
import xmltodict
from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from wechatpy.enterprise.crypto import WeChatCrypto

from scrm.models import WeComSetup
from scrm.roles import Perm, permission_required
from scrm.wecom import credentials as creds
from scrm.wecom.gateway import Credentials, WeComError, WeComGateway

ADVICE = {
    40013: "企业ID (CorpID) 不正确：在管理后台「我的企业」页面底部复制企业ID。",
    40001: "Secret 不正确：在「客户联系 → API」或应用详情页重新查看，完整复制 Secret。",
    40091: "Secret 不正确：在「客户联系 → API」或应用详情页重新查看，完整复制 Secret。",
    60020: "本服务器的出口 IP 不在企业可信 IP 中：在应用详情页「企业可信IP」里加入它。",
    48002: "该应用没有客户联系权限：在「客户联系 → API → 可调用接口的应用」中加入此应用。",
    84074: "成员没有开通客户联系：在「客户联系 → 权限配置」里给使用的成员开通。",
    -1: "企业微信系统繁忙：稍后再检查一次。",
}


class SetupForm(forms.Form):
    corp_id = forms.CharField(label="企业ID (CorpID)", max_length=64)
    agent_id = forms.IntegerField(label="自建应用 AgentId")
    contact_secret = forms.CharField(label="客户联系 Secret", required=False, max_length=128)
    agent_secret = forms.CharField(label="自建应用 Secret", required=False, max_length=128)
    callback_token = forms.CharField(label="回调 Token", required=False, max_length=64)
    callback_aes_key = forms.CharField(label="回调 EncodingAESKey", required=False, max_length=43)

    def __init__(self, *args, saved: WeComSetup | None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.saved = saved
        if saved is None:
            for name in creds.SECRET_FIELDS:
                self.fields[name].required = True

    def clean_callback_aes_key(self) -> str:
        key = self.cleaned_data["callback_aes_key"]
        if key and (len(key) != 43 or not key.isalnum()):
            raise forms.ValidationError(
                "EncodingAESKey 应为 43 位字母和数字，请从回调配置页完整复制。"
            )
        return key


@permission_required(Perm.CONNECT_WECOM)
def setup_page(request: HttpRequest) -> HttpResponse:
    saved = WeComSetup.objects.first()
    form = SetupForm(request.POST or None, saved=saved)
    results = None
    if request.method == "POST" and request.POST.get("action") == "check":
        form = SetupForm(None, saved=saved)
        results = run_checks(callback_url=request.build_absolute_uri(reverse("wecom_callback")))
    elif request.method == "POST" and form.is_valid():
        setup = saved or WeComSetup()
        setup.corp_id = form.cleaned_data["corp_id"]
        setup.agent_id = form.cleaned_data["agent_id"]
        for name in creds.SECRET_FIELDS:
            if form.cleaned_data[name]:  # blank keeps what was saved
                setattr(setup, name, creds.encrypt(form.cleaned_data[name]))
        setup.updated_by = request.user
        setup.save()
        return redirect("wecom_setup")
    if saved is not None:
        current = creds.current()
        for name in creds.SECRET_FIELDS:
            form.fields[name].help_text = f"已保存 {creds.mask(getattr(current, name))}"
        form.initial = {"corp_id": saved.corp_id, "agent_id": saved.agent_id}
    return render(
        request, "scrm/wecom_setup.html", {"form": form, "saved": saved, "results": results}
    )


def _check(name: str, action) -> dict:
    try:
        detail = action()
    except WeComError as error:
        return {
            "name": name,
            "ok": False,
            "detail": f"errcode {error.errcode}: {error.errmsg}",
            "advice": ADVICE.get(error.errcode, "对照企业微信错误码说明处理后再检查。"),
        }
    except (requests.RequestException, ValueError) as error:
        return {"name": name, "ok": False, "detail": str(error), "advice": ""}
    return {"name": name, "ok": True, "detail": detail, "advice": ""}


def run_checks(*, callback_url: str) -> list[dict]:
    """Token fetch for each secret, a read call, and the callback URL's verification handshake."""
    current = creds.current()
    contact = WeComGateway(Credentials(current.corp_id, current.contact_secret))
    agent = WeComGateway(Credentials(current.corp_id, current.agent_secret))

    def handshake() -> str:
        plain = f"scrm-check-{secrets.token_hex(4)}"
        timestamp, nonce = int(time.time()), secrets.token_hex(4)
        crypto = WeChatCrypto(current.callback_token, current.callback_aes_key, current.corp_id)
        encrypted = xmltodict.parse(crypto.encrypt_message(plain, nonce, timestamp))["xml"]
        query = urlencode(
            {
                "msg_signature": encrypted["MsgSignature"],
                "timestamp": timestamp,
                "nonce": nonce,
                "echostr": encrypted["Encrypt"],
            }
        )
        reply = requests.get(f"{callback_url}?{query}", timeout=5)
        if reply.status_code != 200 or reply.text != plain:
            raise ValueError(
                f"回调 URL 验证失败（HTTP {reply.status_code}）："
                f"检查 Token 与 EncodingAESKey 是否与企业微信后台一致，"
                f"以及 {callback_url} 能否从公网访问。"
            )
        return f"{callback_url} 验证通过"

    return [
        _check("客户联系 Secret 获取 access_token", lambda: contact.fetch_token() or "成功"),
        _check("读取配置了客户联系的成员", lambda: f"{len(contact.follow_user_list())} 位成员"),
        _check("自建应用 Secret 获取 access_token", lambda: agent.fetch_token() or "成功"),
        _check("回调 URL 验证", handshake),
    ]
