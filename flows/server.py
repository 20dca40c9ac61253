"""The Prefect API a command runs its flows against: the configured server, or a temporary
one that this process starts, with a start-up budget for slow machines and one retry.

Prefect starts its temporary (ephemeral) server lazily, inside the first flow call, and gives
it `PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS` (Prefect's default: 20 s) to answer.
On a busy 2-core machine that is often too little, and the failure surfaced as a traceback
from deep inside the flow call. Starting it here first turns that into one retry, then one
line naming the setting, under the CLI's exit code for infrastructure failures.

A server that dies in the middle of a run (killed, out of memory) is watched for too. Left to
Prefect, its client retries each call for about a minute, the run then fails with tracebacks in
Prefect's log, and at exit Prefect spends seconds on each task-run event it could not send:
minutes in all. While a job holds its output directory, a watchdog thread asks the server's
`/health` every couple of seconds; once a server that answered stops answering for
`SYNTH_SERVER_LOST_AFTER_SECONDS` (default 30 s, time enough for a restart), the command prints
one line and exits at once, with the exit code for infrastructure failures (3). Every write a
run publishes is atomic (checkpoints, staged shards, the export), so stopping there leaves the
previous export or none, and the next run resumes training from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from synth.errors import InternalError

STARTUP_SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
ATTEMPTS = 2
LOST_AFTER_SETTING = "SYNTH_SERVER_LOST_AFTER_SECONDS"
LOST_AFTER_SECONDS = 30.0
POLL_SECONDS = 2.0
EXIT_INTERNAL = 3  # synth_cli.main.EXIT_INTERNAL (the CLI imports this module, not the reverse)

log = logging.getLogger(__name__)


def ensure_prefect_api(attempts: int = ATTEMPTS) -> str | None:
    """Make sure flows have an API: None when one is configured (PREFECT_API_URL), else the
    temporary server's URL, started now (retried once after a timed-out start)."""
    return _api(attempts)[0] if _api_configured() is None else None


@contextlib.contextmanager
def watched_prefect_api(attempts: int = ATTEMPTS) -> Iterator[str | None]:
    """`ensure_prefect_api`, and the server watched while the block (one job) runs: if it
    stops answering, this process ends with one line (`watch`). The watch ends with the
    block, so a server stopped later (the temporary one, at exit) is never judged."""
    url, temporary = _api(attempts)
    stop = threading.Event()
    if url is not None:
        threading.Thread(
            target=watch,
            args=(url, lost_after_seconds()),
            kwargs={"give_up": lambda: _give_up(url, temporary), "stop": stop},
            name="synth-prefect-watchdog",
            daemon=True,
        ).start()
    try:
        yield url if temporary else None
    finally:
        stop.set()


def _api_configured() -> str | None:
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


def _api(attempts: int) -> tuple[str | None, bool]:
    """(the API's URL, whether it is a temporary server started here)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        return settings.api.url, False
    if not settings.server.ephemeral.enabled:
        return None, False
    timeout = settings.server.ephemeral.startup_timeout_seconds
    for attempt in range(1, attempts + 1):
        server = SubprocessASGIServer()  # the instance Prefect's own client will reuse
        try:
            with _dies_with_this_process():
                server.start()
        except RuntimeError:
            _stop(server)
            log.warning(
                "the temporary Prefect server did not answer within %d s (attempt %d of %d)",
                timeout,
                attempt,
                attempts,
            )
            continue
        return server.api_url, True
    raise InternalError(
        f"the temporary Prefect server did not start within {timeout} s, {attempts} times: "
        f"raise {STARTUP_SETTING}, run on a less busy machine, or point PREFECT_API_URL at a "
        "running Prefect server"
    )


def _stop(server: object) -> None:
    """Kill a server process that did not come up in time, so a retry starts clean."""
    process = getattr(server, "server_process", None)
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()
    server.running = False  # type: ignore[attr-defined]
    server.port = None  # type: ignore[attr-defined]  # a fresh port for the next attempt


def _die_with_parent() -> None:  # pragma: no cover (runs in the child, between fork and exec)
    """In the server's process: ask Linux to SIGTERM it when its parent dies, so a killed
    `synth run` leaves no server behind (PR_SET_PDEATHSIG = 1)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


@contextlib.contextmanager
def _dies_with_this_process() -> Iterator[None]:
    """While Prefect starts its server, the processes it spawns die with this one (Linux;
    elsewhere, nothing changes). Only Prefect's server module sees the wrapped `Popen`."""
    from prefect.server.api import server as server_module

    if not sys.platform.startswith("linux"):
        yield
        return

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        kwargs.setdefault("preexec_fn", _die_with_parent)
        return subprocess.Popen(*args, **kwargs)

    shim = types.SimpleNamespace(**{**vars(subprocess), "Popen": popen})
    server_module.subprocess = shim  # type: ignore[assignment]
    try:
        yield
    finally:
        server_module.subprocess = subprocess


# ---- a server that stops answering in the middle of a run -------------------------------
def lost_after_seconds() -> float:
    """How long a server that answered may go silent before the run gives up on it."""
    try:
        return max(1.0, float(os.environ.get(LOST_AFTER_SETTING, LOST_AFTER_SECONDS)))
    except ValueError:
        return LOST_AFTER_SECONDS


def server_answers(api_url: str, timeout: float = 5.0) -> bool | None:
    """True when `/health` answers (any HTTP status: a server is there), False when nothing
    listens or it does not answer in time, None for anything else (TLS, proxy, DNS: not a
    sign that a server which answered before has died)."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except urllib.error.URLError as err:
        reason = err.reason
        return False if isinstance(reason, ConnectionError | TimeoutError) else None
    except (ConnectionError, TimeoutError):
        return False
    except (OSError, ValueError):
        return None


def job_running() -> bool:
    """A job holds its output directory in this process: a flow is running (the CLI takes
    the lock before the flow starts and releases it when the flow has ended)."""
    from jobs import paths

    return bool(getattr(paths, "_HELD", True))


# While the server is silent, these log every event Prefect cannot send, payload and all,
# every few seconds: held back until it answers again (or the run stops, in one line).
NOISY_LOGGERS = ("prefect._internal.concurrency", "prefect.events.clients")


def _hold_back(record: logging.LogRecord) -> bool:
    return False


_raise_exceptions = logging.raiseExceptions


def quiet_prefect(quiet: bool) -> None:
    """Hold back (True) or let through again (False) Prefect's per-event connection errors,
    and the "--- Error logging to API ---" lines its log handler writes when `logging`
    reports handler errors (`logging.raiseExceptions`)."""
    global _raise_exceptions
    for name in NOISY_LOGGERS:
        # a filter, not a level: Prefect's internal logger ignores levels (`SafeLogger`)
        logger = logging.getLogger(name)
        if quiet:
            logger.addFilter(_hold_back)
        else:
            logger.removeFilter(_hold_back)
    if quiet:
        _raise_exceptions, logging.raiseExceptions = logging.raiseExceptions, False
    else:
        logging.raiseExceptions = _raise_exceptions


def watch(
    api_url: str,
    lost_after: float,
    give_up: Callable[[], None],
    running: Callable[[], bool] = job_running,
    answers: Callable[[str], bool | None] = server_answers,
    poll: float = POLL_SECONDS,
    quiet: Callable[[bool], None] = quiet_prefect,
    stop: threading.Event | None = None,
) -> None:
    """Call `give_up` once a server that has answered does not answer for `lost_after`
    seconds while `running()`; outside a run (before the flow, or while Prefect drains its
    queues at exit) a silent server is not this watchdog's business. `quiet(True)` when the
    server falls silent, `quiet(False)` when it answers again. Ends when `stop` is set (the
    job is over)."""
    seen = False
    silent_since: float | None = None
    while stop is None or not stop.is_set():
        answer = answers(api_url) if running() else None
        seen = seen or answer is True
        if answer is False and seen:
            if silent_since is None:
                silent_since = time.monotonic()
                quiet(True)
                log.warning(
                    "the Prefect server at %s does not answer: waiting up to %.0f s for it",
                    api_url,
                    lost_after,
                )
            if time.monotonic() - silent_since >= lost_after:
                give_up()
                return
        elif silent_since is not None:
            silent_since = None
            quiet(False)
            if answer is True:
                log.warning("the Prefect server at %s answers again", api_url)
        if stop is not None:
            stop.wait(poll)
        else:
            time.sleep(poll)
    if silent_since is not None:  # the job ended while the server was silent
        quiet(False)


def _give_up(api_url: str, temporary: bool) -> None:  # pragma: no cover (ends the process)
    """One line, then exit now: Prefect would retry every call for a minute, then spend
    seconds on each event it could not send. Whatever the run published is whole (atomic)."""
    seconds = lost_after_seconds()
    if temporary:
        where, hint = "the temporary Prefect server", "run the same command again"
    else:
        where = f"the Prefect server at {api_url}"
        hint = "start it again (or unset PREFECT_API_URL for a temporary one), then run again"
    message = (
        f"error: {where} stopped answering for {seconds:.0f} s in the middle of the run, so "
        f"the run stopped: {hint}; the new run resumes training from its last checkpoint, and "
        "any earlier export is untouched"
    )
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stderr.write(f"\n{message}\n")
        sys.stderr.flush()
    os._exit(EXIT_INTERNAL)
