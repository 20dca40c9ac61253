"""No error text from a third-party library leaves a job step.

pandas, pyarrow, numpy, pydicom and PIL quote the value they could not handle in their
messages, and a message travels: the orchestrator logs a failed task's exception with its
traceback (chained exceptions included) into its database, the flow run's state carries it,
`run.json` records it, the command line prints it. The library's own errors (`SynthError`)
name columns, rows and files, never values; any other exception that escapes a job step is
replaced here by a `StepFailedError` that names the step and the exception's type only.

`SYNTH_DEBUG=1` turns this off, so the original exception and its traceback come through:
for debugging on your own machine, never on a shared server, whose logs and database keep
what a message quotes.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

from synth.errors import InternalError, SynthError

DEBUG_ENV = "SYNTH_DEBUG"

F = TypeVar("F", bound=Callable[..., Any])


class StepFailedError(InternalError):
    """A job step failed with an unexpected error; the message names only the step and the
    error's type (its text can quote data values)."""


def debug_enabled() -> bool:
    """SYNTH_DEBUG set to anything but empty, 0, false or no."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def failure_message(what: str, err: BaseException) -> str:
    return (
        f"the {what} failed with {type(err).__name__} (its message is not shown, as it can "
        f"quote data values): run it again with `synth --debug` (or {DEBUG_ENV}=1) on your "
        "own machine, never on a shared server, for the full error and traceback"
    )


def _detach(err: BaseException) -> None:
    """Drop the exceptions chained to ours: a traceback prints theirs too."""
    err.__cause__ = None
    err.__context__ = None
    err.__suppress_context__ = True


def run_step(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`; an exception other than a `SynthError` becomes a
    `StepFailedError` naming `what` ("load step") and the exception's type."""
    try:
        return fn(*args, **kwargs)
    except SynthError as err:
        if not debug_enabled():
            _detach(err)
        raise
    except Exception as err:
        if debug_enabled():
            raise
        message = failure_message(what, err)
    # Raised outside the handler, so the original is not even its __context__.
    raise StepFailedError(message)


def guarded(what: str) -> Callable[[F], F]:
    """Decorator form of `run_step`, for task and flow bodies."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return run_step(what, fn, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def retry_unless_bad_input(task: Any, task_run: Any, state: Any) -> bool:
    """A Prefect `retry_condition_fn`: retry passing failures, not a `SynthError` (bad input
    or a bad setting fails the same way again, and each retry logs the error once more)."""
    return not isinstance(getattr(state, "data", None), SynthError)
