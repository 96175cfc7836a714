"""A step's daily window that holds the present moment, for tests that run at any hour."""

from datetime import datetime, timedelta

import pytest

from sop.scheduling import SHANGHAI


def window_around_now(*, before: timedelta, after: timedelta) -> dict:
    """window_start and window_end for a SopStep: from `before` ago (or midnight) to
    `after` from now. A step's window stays within one Shanghai day, so late in the
    day, when `after` does not fit, the test is skipped rather than run on a
    window shorter than it needs."""
    now = datetime.now(tz=SHANGHAI)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    last = midnight + timedelta(hours=23, minutes=59)
    if now + after > last:
        pytest.skip(f"needs a window {after} long from now, past the Shanghai day's end")
    return {
        "window_start": max(now - before, midnight).time().replace(second=0, microsecond=0),
        "window_end": (now + after).time().replace(second=0, microsecond=0),
    }
