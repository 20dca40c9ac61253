"""Progress bars: tqdm's redraws on a terminal; a few plain lines in a log, never a `\\r`."""

from __future__ import annotations

import io
import re
from pathlib import Path

from synth.progress import LogProgress, progress_bar

REPO = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_per_quarter_and_no_carriage_return():
    log = io.StringIO()
    # mininterval=0: tqdm asks to redraw on every step, so only the policy limits the lines
    for _ in progress_bar(range(10_000), file=log, desc="train", unit="step", mininterval=0):
        pass
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    percents = [int(re.search(r"(\d+)%", line).group(1)) for line in lines]
    assert percents == [0, 25, 50, 75, 100], lines
    assert all(line.startswith("train:") for line in lines)


def test_a_log_bar_that_clears_itself_still_ends_on_a_plain_line():
    log = io.StringIO()
    with progress_bar(total=11, file=log, desc="evaluate", leave=False, mininterval=0) as bar:
        for i in range(11):
            bar.set_postfix_str(f"part {i}")
            bar.update()
    text = log.getvalue()
    assert "\r" not in text and len(text.splitlines()) <= 5
    assert "100%" in text.splitlines()[-1] and "part 10" in text.splitlines()[-1]


def test_a_log_bar_without_a_total_prints_at_its_start_and_end():
    log = io.StringIO()
    bar = progress_bar(file=log, desc="sample", mininterval=0)
    for _ in range(1000):
        bar.update()
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "1000" in lines[-1] and "\r" not in log.getvalue()


def test_a_terminal_keeps_tqdms_redrawn_bar_and_a_disabled_bar_prints_nothing():
    terminal = Terminal()
    bar = progress_bar(range(100), file=terminal, mininterval=0)
    assert not isinstance(bar, LogProgress)
    for _ in bar:
        pass
    assert terminal.getvalue().count("\r") > 10  # redrawn in place
    log = io.StringIO()
    for _ in progress_bar(range(100), file=log, disable=True):
        pass
    assert log.getvalue() == ""


def test_every_progress_bar_goes_through_the_one_helper():
    direct = [
        str(path.relative_to(REPO))
        for package in ("synth", "jobs", "evaluation", "flows", "synth_cli")
        for path in (REPO / package).rglob("*.py")
        if re.search(r"^\s*(from tqdm|import tqdm)", path.read_text(), re.MULTILINE)
    ]
    assert direct == ["synth/progress.py"], direct
