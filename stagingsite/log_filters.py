"""Logging filters, wired in `settings.LOGGING`.

An attempt's webhook URL carries its token (`?attempt=…`, docs/replicate.md#webhooks): an unguessable
secret that names the attempt to a webhook and to reconcile, so it must stay as private as the URL
given to Replicate. Access logs print the request line whole (runserver's `django.server`, an app
server's access log), so every handler's records go through `RedactTokens`.
"""

from __future__ import annotations

import logging
import re

# Query parameters whose values are credentials. "attempt" is staging.gateway.TOKEN_PARAM (not imported:
# logging is configured before the apps load); tests/stagingsite/test_log_filters.py keeps the two equal.
SECRET_PARAMS = ("attempt",)
REDACTED = "[redacted]"
# A personal API token wherever it appears (a header echoed by some library, a pasted curl line):
# api.models.ApiToken.PREFIX and what follows it; tests/api/test_tokens.py checks a real one is caught.
API_TOKEN = re.compile(r"\bstg_[A-Za-z0-9_-]{16,}")


class RedactTokens(logging.Filter):
    """Replace the value of every `SECRET_PARAMS` query parameter, and every API token, in a record's message
    by `REDACTED`.

    The message is formatted here (so a token passed as an argument is caught too) and stored back
    with no arguments; records without a token are left as they are.
    """

    pattern = re.compile(rf"([?&](?:{'|'.join(map(re.escape, SECRET_PARAMS))})=)[^&#\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler's own error reporting
            return True
        redacted = API_TOKEN.sub(f"stg_{REDACTED}", self.pattern.sub(rf"\g<1>{REDACTED}", message))
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
