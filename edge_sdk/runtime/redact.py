"""Keep camera and broker credentials out of every log line, health file and message (device-safe, stdlib).

``redact_url("rtsp://admin:hunter2@10.0.0.5/live")`` -> ``"rtsp://admin:***@10.0.0.5/live"``;
:func:`redact_text` does the same to every URL in a text (an error message, a GStreamer pipeline), and to
``password=`` / ``user-pw=`` style settings and ``?token=`` style query parameters.
"""

import re
from typing import Any

MASK = "***"
# scheme://user:password@  (the password is anything up to the last '@' before the host)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s:@/]*):(?P<password>[^\s/]*)@")
# key=value settings and query parameters whose key names a secret (GStreamer's rtspsrc user-pw=, ?token=)
_SECRET_SETTING = re.compile(r"(?P<key>\b(?:user-pw|password|passwd|pwd|pass|token|access_token|secret|key|"
                             r"apikey|api_key|auth|sig|signature)=)(?P<value>\"[^\"]*\"|'[^']*'|[^\s&;!,]*)",
                             re.IGNORECASE)


def redact_text(text: Any) -> Any:
    """``text`` with every URL password and secret-looking ``key=value`` replaced by ``***``."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: "{}{}:{}@".format(m.group("scheme"), m.group("user"), MASK), str(text))
    return _SECRET_SETTING.sub(lambda m: m.group("key") + MASK, text)


def redact_url(url: Any) -> Any:
    """A URL (or any source spec) safe to print: the password and secret parameters replaced by ``***``."""
    return redact_text(url)
