"""Web addresses operators give us to put in front of guides and customers (a link
attachment's url, an image's pic_url): http or https only, so a page of ours never
carries a javascript: or data: link, and WeCom gets what it accepts."""

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

_web = URLValidator(schemes=["http", "https"])
ADDRESS_KEYS = ("url", "pic_url")


def is_web_address(value: str) -> bool:
    try:
        _web(value)
    except ValidationError:
        return False
    return True
