"""Rates written the way people write them ("600/m", "10/s"): one parser for every rate setting.

Django-free on purpose: `stagingsite/settings.py` checks `STAGING_CREATE_RATE` with it at start, so a
typo stops the process with one clear line instead of failing every create later.
"""

from __future__ import annotations

import math
import re

_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*$")


def rate_window(text: str) -> tuple[float, float] | None:
    """(N, seconds of the window) of "N/s", "N/m" or "N/h" (a bare N is per minute); None for "0" or "off".

    Raises ValueError, saying what is expected, for anything else.
    """
    if text.strip().lower() in ("", "0", "off", "none"):
        return None
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a rate; write it like 600/m, 10/s or 36000/h (0 or off: no limit)")
    count = float(match.group(1))
    if count <= 0 or not math.isfinite(count):
        return None
    return count, _PER[match.group(2) or "m"]


def parse_rate(text: str) -> float | None:
    """Events per second of "N/s", "N/m" or "N/h" (a bare N is per minute); None for "0" or "off" (no limit).

    Raises ValueError, saying what is expected, for anything else.
    """
    window = rate_window(text)
    return None if window is None else window[0] / window[1]
