"""For tests of the guide's task list that run at any hour: a step due now, tasks that
stay open long enough to act on, and a contact policy without quiet hours (by
default 21:30–09:00, when nothing is given)."""

from datetime import datetime, time, timedelta
from time import sleep

from sop.models import ContactPolicy, Touchpoint
from sop.scheduling import SHANGHAI


def no_quiet_hours() -> None:
    """Quiet hours that start and end at the same time are none."""
    policy = ContactPolicy.current()
    policy.quiet_end = policy.quiet_start
    policy.save()


# A test enrols and dispatches within this much of building its window: from this close
# to the day's last minute on, the window is built in the next day.
ROOM = timedelta(minutes=1)


def room_in_the_day() -> datetime:
    """Now in Shanghai, at least `ROOM` before the day's last minute (a step's window
    ends with it at the latest): in the day's last minutes it waits for the next day."""
    now = datetime.now(tz=SHANGHAI)
    last_minute = now.replace(hour=23, minute=59, second=0, microsecond=0)
    if now >= last_minute - ROOM:
        sleep((last_minute + timedelta(minutes=1, seconds=1) - now).total_seconds())
        now = datetime.now(tz=SHANGHAI)
    return now


def window_around_now(*, before: timedelta) -> dict:
    """window_start and window_end for a SopStep due now: from `before` ago (or
    midnight) to the day's last minute, as a step's window stays within one
    Shanghai day (`room_in_the_day`)."""
    now = room_in_the_day()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "window_start": max(now - before, midnight).time().replace(second=0, microsecond=0),
        "window_end": time(23, 59),
    }


def keep_tasks_open(*, hours: int) -> None:
    """Open tasks close `hours` from now: late in the evening the day's window would
    close them before a test snoozes one for an hour. The task list and its actions
    read the window's end as stored; how scheduling places it is tested elsewhere."""
    until = datetime.now(tz=SHANGHAI) + timedelta(hours=hours)
    Touchpoint.objects.filter(status="task").update(window_ends_at=until)
