"""The service's settings plus `bench.probe` (per-task and per-request CPU records), for `bench/own_cost.py`."""

from stagingsite.settings import *  # noqa: F403
from stagingsite.settings import INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = [*INSTALLED_APPS, "bench.probe.ProbeConfig"]
MIDDLEWARE = ["bench.probe.RequestCpu", *MIDDLEWARE]
