"""gunicorn's configuration: the app server of `manage.py serve`, `make run` and production.

Run from anywhere as `gunicorn -c stagingsite/gunicorn.conf.py`; a command-line flag (`--bind`,
`--workers`) overrides a value here. The numbers and the connection budget they imply are explained in
docs/operations.md#the-app-server.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stagingsite.settings")

from stagingsite import appserver  # noqa: E402 (needs the project on sys.path)

wsgi_app = "stagingsite.wsgi:application"
chdir = str(BASE_DIR)
pythonpath = str(BASE_DIR)

# Loopback: a TLS proxy in front forwards to it (docs/operations.md#deploy-order).
bind = ["127.0.0.1:8000"]
# Processes, and threads in each: requests in flight at once = workers * threads. Each worker has its own
# database pool of DATABASE_POOL_MAX connections, so keep WEB_THREADS <= DATABASE_POOL_MAX.
try:
    workers = appserver.workers()
    threads = appserver.threads()
except ValueError as exc:
    raise SystemExit(f"error: {exc}") from None
worker_class = "gthread"
# A worker silent this long is killed and replaced; requests themselves are bounded by the app (upload
# caps, download timeouts), and the threaded worker keeps its heartbeat during a long one.
timeout = 60
graceful_timeout = 20  # on SIGTERM, requests in flight get this long to finish
keepalive = 5  # behind a proxy that reuses connections

# Access log on stdout without query strings or the referrer: the webhook URL's query carries the
# attempt's token, and other URLs may carry signatures.
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'

# gunicorn's control socket lives at one path per user: two servers on a machine would fight over it.
control_socket_disable = True


def on_starting(server: object) -> None:
    """Refuse to start with the settings' one-line reason (a missing DJANGO_SECRET_KEY…), not a traceback per worker."""
    from stagingsite.startup import load_settings_or_exit

    load_settings_or_exit()
