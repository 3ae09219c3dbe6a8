"""Database connections by kind of process (docs/operations.md#connection-budget).

On PostgreSQL every process gets a bounded psycopg pool from the settings: right for the app server's
threaded workers. `qcluster` is different: it forks its sentinel, monitor, pusher and workers, and a
pool (its open connections and its background threads) copied into a forked child would share sockets
with its parent. Each of those processes is single-threaded and needs one connection at most, so the
cluster turns the pool off for itself, before it opens any connection, and keeps one persistent
connection per process, closed by django-q2 before every fork.
"""

from __future__ import annotations

from django.db import connections

# How long a queue process keeps its one connection (seconds), as Django's CONN_MAX_AGE.
QUEUE_CONN_MAX_AGE = 60


def use_plain_connections(max_age: int = QUEUE_CONN_MAX_AGE) -> None:
    """Drop the connection pool in this process (and the ones it will fork): one persistent connection each."""
    for alias in connections:
        connection = connections[alias]
        options = connection.settings_dict.get("OPTIONS", {})
        if not options.get("pool"):
            continue
        connection.close()
        connection.close_pool()
        del options["pool"]
        connection.settings_dict["CONN_MAX_AGE"] = max_age
