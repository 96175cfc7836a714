"""Reasons made now and read later, in the reader's language.

An order import runs on a worker, without a reader; its report is read in the
browser, in Chinese or in English. A `Reason` is the Simplified Chinese text
(it is a `str`, so the command line, the API and the tests see the text as
before) that also keeps how it was made: a message id of the catalogue, with
`{name}` fields, and their values. Stored with `Reason.spec()`, it is shown with
`reason_text(spec)` in the active language. `python manage.py makemessages`
collects the message ids from `Reason("…")` calls (scrm's makemessages).
"""

from django.utils.translation import gettext, gettext_noop

# Between the items of a list argument (rows 3、4、5), in the reader's language.
LIST_SEPARATOR = gettext_noop("、")


class Reason(str):
    """`template.format(**args)`, remembering `template` and `args`. An argument that
    is a Reason (a column's name: 单价) is translated with it; one that is a list is
    joined with the language's separator."""

    def __new__(cls, template: str, **args) -> "Reason":
        shown = {
            name: LIST_SEPARATOR.join(map(str, value)) if isinstance(value, list) else value
            for name, value in args.items()
        }
        reason = super().__new__(cls, template.format(**shown))
        reason.template, reason.args = template, args
        return reason

    def __reduce__(self):  # copied or pickled as made, not from its text
        return _reason, (self.template, self.args)

    def spec(self) -> dict:
        """JSON for `reason_text`: the message id and the arguments as text."""
        return {"template": self.template, "args": {n: _spec(v) for n, v in self.args.items()}}


def _reason(template: str, args: dict) -> Reason:
    return Reason(template, **args)


def _spec(value):
    if isinstance(value, Reason):
        return value.spec()
    if isinstance(value, list):
        return [_spec(item) for item in value]
    return str(value)


def _text(value) -> str:
    if isinstance(value, dict):
        return reason_text(value)
    if isinstance(value, list):
        return gettext(LIST_SEPARATOR).join(map(_text, value))
    return value


def spec_of(text: str) -> dict | None:
    """What to store of a text to show it translated later (None: a plain text)."""
    return text.spec() if isinstance(text, Reason) else None


def translated(text: str) -> str:
    """A text that may be a Reason, in the active language."""
    return reason_text(text.spec()) if isinstance(text, Reason) else text


def reason_text(spec: dict) -> str:
    """A stored reason in the active language (as made, when its translation does not
    fit its arguments)."""
    args = {name: _text(value) for name, value in spec["args"].items()}
    try:
        return gettext(spec["template"]).format(**args)
    except (KeyError, IndexError, ValueError):
        return spec["template"].format(**args)


def spec_rows_shifted(spec: dict, by: int) -> dict:
    """`spec` with the row numbers it names (its `row` and `rows` arguments, in the
    reasons within it too) moved by `by`: rows of a file as lines of a request."""

    def shifted(name: str, value):
        if isinstance(value, dict):
            return spec_rows_shifted(value, by)
        if isinstance(value, list):
            return [shifted(name, item) for item in value]
        if name in ("row", "rows") and value.isdigit():
            return str(int(value) + by)
        return value

    args = {name: shifted(name, value) for name, value in spec["args"].items()}
    return {"template": spec["template"], "args": args}
