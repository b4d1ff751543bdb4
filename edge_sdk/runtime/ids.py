"""Device ids: the one rule, checked at every entry point (device-safe: Python 3.6, stdlib only).

A device id is an MQTT topic level, a broker user name, an ACL line, a systemd unit suffix and a file name, so
it must be harmless in all of them: ``[A-Za-z0-9_.-]{1,64}``, and not ``.`` or ``..`` (a path component that
leaves the folder it names). No spaces, control characters, '/', '+', '#' or newlines can get through.
"""

import re
from typing import Any

from edge_sdk.errors import ConfigError

DEVICE_ID_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
_DEVICE_ID_RE = re.compile(r"\A" + DEVICE_ID_PATTERN + r"\Z")


def is_device_id(text: Any) -> bool:
    """True if ``text`` is a str that follows the device id rule (see the module docstring)."""
    return isinstance(text, str) and bool(_DEVICE_ID_RE.match(text)) and text not in (".", "..")


def check_device_id(device_id: Any, what: str = "device id") -> str:
    """``device_id`` unchanged if it follows the rule, else ConfigError saying the rule."""
    if not is_device_id(device_id):
        shown = device_id if not isinstance(device_id, str) else device_id[:80]
        raise ConfigError("{} {!r} is not usable: use 1-64 letters, digits, '_', '.', '-' (not '.' or '..'); "
                          "it is an MQTT topic level, a broker user name and a file name".format(what, shown))
    return device_id
