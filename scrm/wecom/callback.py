"""/wecom/callback/: WeCom's URL verification and its event deliveries.

GET answers the verification handshake with the decrypted echostr. POST checks
msg_signature and the timestamp window, decrypts, stores the event once (a
replay changes nothing), answers at once and leaves the handling to a worker.
A bad signature gets 403, a body that cannot be read 400; neither writes.
"""

import hashlib
import json
import logging
import time

import xmltodict
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException

from scrm.models import CallbackEvent
from scrm.wecom.credentials import current
from scrm.wecom.events import fast_handlers_for

logger = logging.getLogger(__name__)
TIMESTAMP_WINDOW = 300  # seconds; WeCom retries within seconds, replays come later
KEY_FIELDS = ("Event", "ChangeType", "UserID", "ExternalUserID", "ChatId", "Id", "CreateTime")


def _text(value) -> str:
    """A field of the event as text; lists such as MemChangeList (<Item> children) become
    comma-separated ids."""
    if value is None:
        return ""
    if isinstance(value, dict) and "Item" in value:
        items = value["Item"]
        return ",".join(items if isinstance(items, list) else [items])
    return str(value)


def _crypto() -> WeChatCrypto:
    credentials = current()
    return WeChatCrypto(
        credentials.callback_token, credentials.callback_aes_key, credentials.corp_id
    )


@csrf_exempt
def callback(request: HttpRequest) -> HttpResponse:
    query = request.GET
    signature, timestamp, nonce = (
        query.get(k, "") for k in ("msg_signature", "timestamp", "nonce")
    )
    if request.method == "GET":
        try:
            echo = _crypto().check_signature(signature, timestamp, nonce, query.get("echostr", ""))
        except InvalidSignatureException:
            logger.warning("wecom callback verification: bad signature")
            return HttpResponse("bad signature", status=403)
        except Exception:  # noqa: BLE001 - an unreadable echostr
            return HttpResponse("bad echostr", status=400)
        return HttpResponse(
            echo if isinstance(echo, str) else echo.decode(), content_type="text/plain"
        )
    if request.method != "POST":
        return HttpResponse(status=405)
    if not timestamp.isdecimal() or abs(time.time() - int(timestamp)) > TIMESTAMP_WINDOW:
        logger.warning("wecom callback: timestamp outside the window")
        return HttpResponse("stale timestamp", status=403)
    try:
        plain = _crypto().decrypt_message(request.body, signature, timestamp, nonce)
        fields = {key: _text(value) for key, value in xmltodict.parse(plain)["xml"].items()}
        event = fields["Event"]
    except InvalidSignatureException:
        logger.warning("wecom callback: bad signature")
        return HttpResponse("bad signature", status=403)
    except Exception:  # noqa: BLE001 - any unreadable body is the sender's error
        logger.warning("wecom callback: malformed body", exc_info=True)
        return HttpResponse("malformed", status=400)
    # The ids and time name the event; the digest of every field tells apart two changes
    # of one group or tag in the same second (another UpdateDetail, other members). A
    # replay decrypts to the same fields, so it has the same key.
    digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode(), usedforsecurity=False)
    key = ":".join([*(fields.get(name, "") for name in KEY_FIELDS), digest.hexdigest()[:16]])
    try:
        with transaction.atomic():
            stored = CallbackEvent.objects.create(
                key=key, event=event, change_type=fields.get("ChangeType", ""), payload=fields
            )
    except IntegrityError:
        return HttpResponse("success")  # a replay: stored before, nothing changes
    from scrm.celery import Queues
    from scrm.tasks import handle_callback_event, handle_fast_event

    transaction.on_commit(lambda: handle_callback_event.delay(stored.pk))
    if fast_handlers_for(event, fields.get("ChangeType", "")):
        transaction.on_commit(
            lambda: handle_fast_event.apply_async((stored.pk,), queue=str(Queues.MESSAGES))
        )
    return HttpResponse("success")
