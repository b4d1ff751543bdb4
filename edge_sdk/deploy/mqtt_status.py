"""Read the runtime's retained ``{prefix}/{device_id}/status`` messages: what the fleet says about itself.

A device reports over MQTT even when SSH is firewalled off, and its last will turns the status to
``offline`` when it drops off the broker; `devices status --mqtt` shows it next to what SSH says.
"""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import urlparse

from edge_sdk.errors import BrokerError, ConfigError


def describe_status(payload: bytes, now: float | None = None) -> str:
    """A short text for one status payload: JSON with status/state (+ ts) or a plain word like ``offline``."""
    text = payload.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text or "(empty)"
    if not isinstance(data, dict):
        return str(data)
    state = data.get("status") or data.get("state") or "?"
    ts = data.get("ts")
    if isinstance(ts, (int, float)):
        age = max(0.0, (now or time.time()) - ts)
        return "{} ({:.0f}s ago)".format(state, age)
    return str(state)


def read_retained_status(url: str, prefix: str, device_ids: list[str], wait: float = 1.5) -> dict[str, str]:
    """{device_id: description} from the retained status topics; devices without one are left out."""
    import paho.mqtt.client as mqtt

    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "tcp", "") or not parsed.hostname:
        raise ConfigError("--mqtt {!r}: expected mqtt://HOST[:PORT]".format(url))
    wanted = set(device_ids)
    seen: dict[str, str] = {}
    done = threading.Event()
    kwargs = {"callback_api_version": mqtt.CallbackAPIVersion.VERSION2} if hasattr(mqtt, "CallbackAPIVersion") else {}
    client = mqtt.Client(**kwargs)

    def on_connect(c, _userdata, _flags, *rest):
        c.subscribe("{}/+/status".format(prefix), qos=1)

    def on_message(_c, _userdata, msg):
        parts = msg.topic.split("/")
        device_id = parts[-2] if len(parts) >= 2 else msg.topic
        if device_id in wanted:
            seen[device_id] = describe_status(msg.payload)
            if set(seen) >= wanted:
                done.set()

    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(parsed.hostname, parsed.port or 1883, keepalive=10)
    except OSError as exc:
        raise BrokerError("cannot reach MQTT broker {}: {}".format(url, exc)) from None
    client.loop_start()
    try:
        done.wait(wait)
    finally:
        client.loop_stop()
        client.disconnect()
    return seen
