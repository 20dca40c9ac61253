"""Progress bars: tqdm's on a terminal, a few plain lines anywhere else.

A bar redraws itself with carriage returns, many times a second. In a CI log, a Prefect
worker's log or a file (`synth run ... 2> run.log`) every redraw stays: hundreds of kilobytes
of `\\r` for one training run. So when the stream is not a terminal, a bar prints one line as it
starts and as it passes 25, 50 and 75 % and ends: at most five lines, and never a `\\r`.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from tqdm.auto import tqdm
from tqdm.std import tqdm as std_tqdm

LOG_STEPS = 4
"""Lines at 0, 1/4, 2/4, 3/4 and the end of a bar whose total is known."""
LOG_INTERVAL_S = 60.0
"""A bar with no known total prints a line at most this often."""


def progress_bar(iterable: Any = None, *, file: IO[str] | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar (same arguments) on `file`, stderr by default: tqdm's own on a terminal,
    `LogProgress` on a pipe or a file."""
    file = file if file is not None else sys.stderr
    bar = tqdm if _is_terminal(file) else LogProgress
    return bar(iterable, file=file, **kwargs)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class LogProgress(std_tqdm):
    """tqdm for a log: a plain line (tqdm's usual text) when the bar starts, at each quarter
    and when it closes, each ending in a newline; no carriage return, no clearing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._logged_step = -1
        self._logged_n: float | None = None
        self._logged_at = 0.0
        kwargs["dynamic_ncols"] = False
        kwargs.setdefault("ncols", 100)  # a fixed width: a log has no terminal to fit
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None:  # tqdm clearing its line: nothing to clear in a log
            return False
        step = self._step()
        now = time.monotonic()
        due = step > self._logged_step
        if self.total is None:
            due = self._logged_n is None or now - self._logged_at >= LOG_INTERVAL_S
        if due:
            self._log(step, now)
        return True

    def clear(self, nolock: bool = False) -> None:
        """Nothing to clear: every line a log bar printed is final."""

    def close(self) -> None:
        if not self.disable and self._logged_n != self.n and hasattr(self, "last_print_t"):
            with self._lock:
                self._log(self._step(), time.monotonic())  # where the bar ended
        self.leave = False  # tqdm's own close would redraw the line, or clear it with `\r`
        super().close()

    def _step(self) -> int:
        if not self.total:
            return 0
        return min(LOG_STEPS, int(LOG_STEPS * self.n / self.total))

    def _log(self, step: int, now: float) -> None:
        self.fp.write(self.__str__() + "\n")
        self.fp.flush()
        self._logged_step, self._logged_n, self._logged_at = step, self.n, now
