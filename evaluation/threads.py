"""Thread caps for the small model fits and neighbour searches the checks run.

On data this size threads barely help, and on a machine that is busy with other work (a model
training next door) OpenMP barriers turn into waits: a 0.6 s boosted-tree fit took 11 s with
2 threads on 2 busy cores, and the privacy distances ran 4-5x slower (measured). So work on
fewer than `SINGLE_THREAD_BELOW` rows runs on one thread; larger work keeps the defaults.
"""

from __future__ import annotations

import contextlib

from threadpoolctl import threadpool_limits

SINGLE_THREAD_BELOW = 50_000


def limit_threads(n_rows: int) -> threadpool_limits | contextlib.nullcontext[None]:
    """Context manager: one OpenMP/BLAS thread for work on fewer than SINGLE_THREAD_BELOW rows."""
    if n_rows < SINGLE_THREAD_BELOW:
        return threadpool_limits(limits=1)
    return contextlib.nullcontext()
