"""`Check`: the outcome of one named check on an export, passed or failed, with a reason."""

from __future__ import annotations

from pydantic import BaseModel

MAX_NAMED = 5
"""At most this many files or columns are named in one reason; the rest are counted."""


class Check(BaseModel):
    """One named check: passed or failed, and a one-line reason either way."""

    name: str
    passed: bool
    reason: str


def name_list(names: list[str]) -> str:
    """The first `MAX_NAMED` names, comma-separated, and how many more there are."""
    shown = ", ".join(names[:MAX_NAMED])
    return shown + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")
