"""Who handles which WeCom callback event: an explicit registry, filled by apps.

`scrm` knows no app; each app registers its handlers in its
`AppConfig.ready()`. Handlers of one event run in a fixed order (contacts 10,
campaigns 20, sop 30), each with the event's fields as a dict and a gateway.
"""

from collections.abc import Callable

Handler = Callable[..., None]
_HANDLERS: dict[tuple[str, str], list[tuple[int, Handler]]] = {}


def register(*, event: str, change_type: str, handler: Handler, order: int) -> None:
    """`change_type="*"` handles every change type of the event."""
    entries = _HANDLERS.setdefault((event, change_type), [])
    if all(existing is not handler for _, existing in entries):
        entries.append((order, handler))
        entries.sort(key=lambda entry: entry[0])


def handlers_for(event: str, change_type: str) -> list[Handler]:
    entries = _HANDLERS.get((event, change_type), []) + _HANDLERS.get((event, "*"), [])
    return [handler for _, handler in sorted(entries, key=lambda entry: entry[0])]


# Handlers that must not wait behind slow work (a welcome message has 20 s): run at once
# in a task of their own on the messages queue, beside the ordered handlers.
_FAST: dict[tuple[str, str], list[Handler]] = {}


def register_fast(*, event: str, change_type: str, handler: Handler) -> None:
    entries = _FAST.setdefault((event, change_type), [])
    if all(existing is not handler for existing in entries):
        entries.append(handler)


def fast_handlers_for(event: str, change_type: str) -> list[Handler]:
    return list(_FAST.get((event, change_type), []))
