"""Errors a user can act on. Each message is one line that says how to fix the input."""

import difflib
import warnings
from collections.abc import Hashable, Iterable


class SynthError(Exception):
    """Base class: the CLI prints these as a one-line error and exits non-zero."""


class InputDataError(SynthError):
    """The protected data cannot be read or does not fit the job."""


class BadValueError(InputDataError, ValueError):
    """A cell cannot be parsed as its column's kind. The message names the column and the row,
    never the value (see `synth.data.parsing`); a ValueError too, as pandas' own errors are."""


class ConfigError(SynthError):
    """The job spec is invalid."""


class NotFittedError(SynthError, ValueError):
    """An estimator was used before `fit` (scikit-learn's contract)."""


class GateFailedError(SynthError):
    """The privacy/fidelity gate blocked the export."""


class JobBusyError(SynthError):
    """Another run holds the job's output directory."""


class InternalError(SynthError):
    """Not the input's fault: an unexpected error inside a step, or infrastructure (the
    orchestration server) that failed. The CLI exits with its own code (3) for these."""


class SynthWarning(UserWarning):
    """Something the user should know that does not stop the job (a column changed on
    reading, images resized). The command line prints it as one `warning:` line; it names
    columns or files, never a value."""


_WARNED: dict[Hashable, None] = {}  # keys warned about in this process, newest last
_MAX_WARNED = 256


def warn_once(
    key: Hashable, message: str, category: type[Warning] = SynthWarning, stacklevel: int = 2
) -> None:
    """Warn once per `key` in this process: the CLI's preflight and the job's own steps read
    the same input, and the user should hear about it once. The oldest keys are forgotten
    past 256, so a long-lived worker does not grow without bound."""
    if key in _WARNED:
        return
    _WARNED[key] = None
    while len(_WARNED) > _MAX_WARNED:
        del _WARNED[next(iter(_WARNED))]
    warnings.warn(message, category, stacklevel=stacklevel + 1)


def did_you_mean(name: str, names: Iterable[object]) -> str:
    """`" (did you mean 'churn'?)"` when one of `names` is close to `name`, else `""`: a
    match ignoring case first, then the closest spelling. For column names, never values."""
    choices = [str(n) for n in names]
    by_case = [c for c in choices if c.casefold() == name.casefold()]
    if not by_case:
        folded = {c.casefold(): c for c in reversed(choices)}  # the first of equal foldings
        close = difflib.get_close_matches(name.casefold(), list(folded), n=1)
        by_case = [folded[c] for c in close]
    return f" (did you mean {by_case[0]!r}?)" if by_case else ""
