"""Phone numbers: normalised to E.164, matched by keyed hash, shown masked.

The full number is never stored; the hash is an HMAC with a key of our own
(`PHONE_HASH_KEY`), so a leaked table cannot be reversed by hashing all
11-digit numbers.
"""

import hashlib
import hmac
import re

from django.conf import settings

_DIGITS = re.compile(r"\D")
# A mainland mobile written out in some text (with +86, 0086 or 86 before it, or not),
# not part of a longer number.
_MOBILE_IN_TEXT = re.compile(r"(?<!\d)((?:\+?86|0086)?[ -]?1[3-9]\d[ -]?)(\d{4})([ -]?\d{4})(?!\d)")


def phone_normalise(raw: str) -> str | None:
    """E.164 for a mainland mobile (+8613800000001); None when it is not one."""
    digits = _DIGITS.sub("", raw or "")
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if len(digits) == 11 and digits.startswith("1"):
        return f"+86{digits}"
    return None


def phone_hash(e164: str) -> str:
    return hmac.new(settings.PHONE_HASH_KEY.encode(), e164.encode(), hashlib.sha256).hexdigest()


def phone_mask(e164: str) -> str:
    """138****5601: what a guide may see."""
    local = e164.removeprefix("+86")
    return f"{local[:3]}****{local[-4:]}"


def phone_cell_mask(text: str) -> str:
    """A cell that failed to read as a phone, fit to quote in an error report that
    managers read: of its digits only the first three and the last four are kept,
    however they are split (13811112222/13933334444 → 138********/*******4444)."""
    count = sum(c.isdigit() for c in text)
    if count < 8:
        return text
    seen, out = 0, []
    for c in text:
        if c.isdigit():
            seen += 1
            c = c if seen <= 3 or seen > count - 4 else "*"
        out.append(c)
    return "".join(out)


def phones_masked(text: str) -> str:
    """`text` with every mobile number in it masked (订单号 13812345678 → 订单号 138****5678):
    for what a file's row quotes from any column into an error report, since a row
    shifted by a missing cell puts the phone under another column's name."""
    return _MOBILE_IN_TEXT.sub(r"\1****\3", text)
