"""The app server's size, read from the environment: gunicorn.conf.py uses it, `serve` checks it first.

Requests in flight at once = workers * threads; each worker process has its own database pool, which
is what bounds the connections (docs/operations.md#connection-budget).
"""

from __future__ import annotations

import os

DEFAULT_WORKERS = 2
DEFAULT_THREADS = 4


def _count(name: str, raw: str) -> int:
    """A whole number >= 1; ValueError naming the variable otherwise."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {raw!r}.")
    return value


def workers() -> int:
    """Worker processes (`WEB_CONCURRENCY`, the variable gunicorn and most platforms already know)."""
    return _count("WEB_CONCURRENCY", os.environ.get("WEB_CONCURRENCY", str(DEFAULT_WORKERS)))


def threads() -> int:
    """Threads per worker process; keep it <= DATABASE_POOL_MAX so that no request waits for a connection."""
    return _count("WEB_THREADS", os.environ.get("WEB_THREADS", str(DEFAULT_THREADS)))
