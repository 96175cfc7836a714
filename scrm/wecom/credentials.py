"""Which WeCom credentials the platform uses: the setup page's, else the settings'."""

import base64
import hashlib
from dataclasses import dataclass

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from scrm.models import WeComSetup

SECRET_FIELDS = ("contact_secret", "agent_secret", "callback_token", "callback_aes_key")


@dataclass(frozen=True)
class WeComCredentials:
    corp_id: str
    agent_id: int
    contact_secret: str
    agent_secret: str
    callback_token: str
    callback_aes_key: str


def _fernet() -> Fernet:
    key = settings.SCRM_ENCRYPTION_KEY
    if not key:
        raise ImproperlyConfigured("SCRM_ENCRYPTION_KEY is not set; secrets cannot be stored.")
    # Any passphrase works: it is stretched to the 32-byte key Fernet needs.
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    return _fernet().decrypt(value.encode()).decode()


def current() -> WeComCredentials:
    setup = WeComSetup.objects.first()
    if setup is None:
        return WeComCredentials(
            corp_id=settings.WECOM_CORP_ID,
            agent_id=settings.WECOM_AGENT_ID,
            contact_secret=settings.WECOM_CONTACT_SECRET,
            agent_secret=settings.WECOM_AGENT_SECRET,
            callback_token=settings.WECOM_CALLBACK_TOKEN,
            callback_aes_key=settings.WECOM_CALLBACK_AES_KEY,
        )
    return WeComCredentials(
        corp_id=setup.corp_id,
        agent_id=setup.agent_id,
        **{name: decrypt(getattr(setup, name)) for name in SECRET_FIELDS},
    )


def mask(value: str) -> str:
    return f"••••{value[-4:]}" if value else ""
