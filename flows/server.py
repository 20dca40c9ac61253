"""The Prefect API a command runs its flows against: the configured server, or a temporary
one that this process starts, with a start-up budget for slow machines and one retry.

Prefect starts its temporary (ephemeral) server lazily, inside the first flow call, and gives
it `PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS` (Prefect's default: 20 s) to answer.
On a busy 2-core machine that is often too little, and the failure surfaced as a traceback
from deep inside the flow call. Starting it here first turns that into one retry, then one
line naming the setting, under the CLI's exit code for infrastructure failures.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
import types
from collections.abc import Iterator
from typing import Any

from synth.errors import InternalError

STARTUP_SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
ATTEMPTS = 2

log = logging.getLogger(__name__)


def ensure_prefect_api(attempts: int = ATTEMPTS) -> str | None:
    """Make sure flows have an API: None when one is configured (PREFECT_API_URL), else the
    temporary server's URL, started now (retried once after a timed-out start)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return None
    timeout = settings.server.ephemeral.startup_timeout_seconds
    for attempt in range(1, attempts + 1):
        server = SubprocessASGIServer()  # the instance Prefect's own client will reuse
        try:
            with _dies_with_this_process():
                server.start()
            return server.api_url
        except RuntimeError:
            _stop(server)
            log.warning(
                "the temporary Prefect server did not answer within %d s (attempt %d of %d)",
                timeout,
                attempt,
                attempts,
            )
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
