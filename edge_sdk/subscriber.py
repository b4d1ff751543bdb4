"""Receive the poses of a fleet over MQTT: ``for msg in edge_sdk.subscribe(url, topic=...)``.

Yields validated pose messages (dicts, schema v1; JSON or compact payloads alike), one per frame, from any
number of devices. Along the way it:

- checks every payload with :mod:`edge_sdk.runtime.message_check` (schema, bounds, finite numbers, and that
  its ``device`` is the device of the topic it came on) and skips a bad one with a warning, counted per device
  (``DeviceStats.bad``): no message a device can publish stops the subscription;
- drops QoS 1 re-deliveries: a message is a duplicate if its ``(device, seq, ts)`` was seen recently
  (``ts`` tells a restarted device, whose ``seq`` starts again at 0, from a re-delivery);
- keeps per-device statistics (:class:`DeviceStats`: fps, people, latency, gaps in ``seq``, the drops the
  device reported in ``metrics``, its retained ``status``), used by ``edge-sdk subscribe``'s live table.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Iterator

from edge_sdk.errors import BrokerError, ConfigError
from edge_sdk.runtime.ids import is_device_id
from edge_sdk.runtime.message_check import (
    MessageError,
    parse_metrics_payload,
    parse_pose_payload,
    parse_status_payload,
    topic_device,
)
from edge_sdk.runtime.mqtt import (
    _CONNACK_HINTS,
    DEFAULT_PREFIX,
    _reason_code,
    configure_client,
    connect_error,
    new_client,
    parse_url,
)

log = logging.getLogger("edge_sdk.subscribe")

DEFAULT_TOPIC = DEFAULT_PREFIX + "/+/poses"
DEFAULT_MAX_PAYLOAD = 1 << 20
_DEDUPE_WINDOW = 4096
MAX_DEVICES = 10000  # devices tracked; beyond, bad messages are only counted in Subscription.skipped


class DeviceStats:
    """What the subscriber knows about one device (for the live table and for applications)."""

    def __init__(self, device: str):
        self.device = device
        self.received = 0
        self.duplicates = 0
        self.bad = 0  # messages on this device's topics that failed the checks (skipped)
        self.gaps = 0  # seq numbers never seen (lost or dropped on the device)
        self.last_seq: int | None = None
        self.people = 0
        self.latency_ms = 0.0
        self.status: dict = {}
        self.metrics: dict = {}
        self._arrivals: collections.deque = collections.deque(maxlen=60)
        self._seen: collections.OrderedDict = collections.OrderedDict()

    @property
    def fps(self) -> float:
        """Messages per second over the last (up to) 60 arrivals."""
        if len(self._arrivals) < 2:
            return 0.0
        span = self._arrivals[-1] - self._arrivals[0]
        return (len(self._arrivals) - 1) / span if span > 0 else 0.0

    @property
    def drops(self) -> int:
        """Frames missing here: seq gaps seen, or what the device reported (frames it dropped + messages its
        delivery queue dropped), whichever is larger (a gap here has one of those causes, or the network)."""
        m = self.metrics

        def count(key):
            value = m.get(key, 0)
            return int(value) if isinstance(value, (int, float)) else 0

        reported = max(count("dropped_frames"), count("drops")) + count("dropped_queue_full") + \
            count("dropped_offline")
        return max(reported, self.gaps)

    def seen(self, key) -> bool:
        if key in self._seen:
            return True
        self._seen[key] = True
        if len(self._seen) > _DEDUPE_WINDOW:
            self._seen.popitem(last=False)
        return False

    def update(self, msg: dict, now: float) -> None:
        self.received += 1
        seq = msg["seq"]
        if self.last_seq is not None and seq > self.last_seq + 1:
            self.gaps += seq - self.last_seq - 1
        if self.last_seq is None or seq > self.last_seq or seq == 0:
            self.last_seq = seq
        self.people = len(msg["people"])
        lat = msg.get("latency_ms") or {}
        self.latency_ms = lat["total"] if "total" in lat else float(sum(lat.values()))  # checked: finite
        self._arrivals.append(now)

    def row(self) -> dict:
        return {"device": self.device, "fps": round(self.fps, 1), "people": self.people,
                "latency_ms": round(self.latency_ms, 1), "drops": self.drops, "received": self.received,
                "bad": self.bad, "state": self.status.get("state", "?")}


class Subscription:
    """An iterable MQTT subscription yielding pose messages; see the module docstring.

    ``count``: stop after that many (deduplicated) messages; ``timeout``: stop after that many seconds in all;
    ``idle_timeout``: stop after that many seconds without a pose message. Use as a context manager or call
    :meth:`close`; iterating to the end closes it.
    """

    def __init__(self, url: str, topic: str | list[str] = DEFAULT_TOPIC, qos: int = 1, tls_ca: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None, username: str | None = None,
                 password: str | None = None, count: int | None = None, timeout: float | None = None,
                 idle_timeout: float | None = None, dedupe: bool = True, max_payload: int = DEFAULT_MAX_PAYLOAD,
                 client_id: str = "", persistent_session: bool = False, connect_timeout: float = 10.0,
                 watch_status: bool = True, reconnect_delay: tuple = (1, 8), callback_api: int | None = None):
        self.host, self.port, use_tls, url_user = parse_url(url)
        self.topics = [topic] if isinstance(topic, str) else list(topic)
        self.qos = qos
        self.count = count
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.dedupe = dedupe
        self.max_payload = max_payload
        self.devices: dict[str, DeviceStats] = {}
        self.skipped = 0
        self.duplicates = 0
        self.yielded = 0
        # status / metrics of the same devices: "edge-sdk/+/poses" -> "edge-sdk/+/status", ".../metrics"
        self.side_topics = []
        if watch_status:
            for t in self.topics:
                if t.endswith("/poses"):
                    self.side_topics += [t[:-len("poses")] + "status", t[:-len("poses")] + "metrics"]
        if persistent_session and not client_id:
            raise ConfigError("a persistent session needs a fixed client id: add --client-id NAME")
        self._queue: queue.Queue = queue.Queue()
        self._connected = threading.Event()
        self._subscribed = threading.Event()  # SUBACK received: from here on nothing published is missed
        self._connack: int | None = None
        self._client = new_client(client_id, clean_session=not persistent_session, callback_api=callback_api)
        configure_client(self._client, use_tls, tls_ca, tls_cert, tls_key, username or url_user, password)
        self._use_tls = use_tls or bool(tls_ca or tls_cert)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.reconnect_delay_set(*reconnect_delay)
        self._started = False
        self._closed = False
        self._connect(connect_timeout)

    # paho thread --------------------------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, rc, *rest):
        self._connack = _reason_code(rc)
        if self._connack == 0:
            client.subscribe([(t, self.qos) for t in self.topics] + [(t, 0) for t in self.side_topics])
            self._connected.set()
        else:
            self._connected.set()

    def _on_subscribe(self, client, userdata, mid, *rest):
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, *args):
        if not self._closed:
            log.warning("lost the MQTT broker %s:%s; reconnecting", self.host, self.port)

    def _on_message(self, client, userdata, msg):
        self._queue.put((msg.topic, msg.payload, time.time()))

    # --------------------------------------------------------------------------------------------------------
    def _connect(self, timeout: float) -> None:
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise connect_error(self.host, self.port, exc, self._use_tls) from exc
        self._client.loop_start()
        self._started = True
        if not self._connected.wait(timeout):
            self.close()
            raise BrokerError("the MQTT broker at {}:{} did not complete the MQTT handshake within {:.0f} s: check "
                              "it is an MQTT listener and the TLS settings".format(self.host, self.port, timeout))
        if self._connack != 0:
            self.close()
            hint = _CONNACK_HINTS.get(self._connack, "connection refused with code {}".format(self._connack))
            raise BrokerError("the MQTT broker at {}:{} refused the subscriber: {}".format(self.host, self.port, hint))
        if not self._subscribed.wait(timeout):
            self.close()
            raise BrokerError("the MQTT broker at {}:{} did not acknowledge the subscription to {} within {:.0f} s: "
                              "check the ACL lets this user read those topics".format(
                                  self.host, self.port, ", ".join(self.topics), timeout))

    def _device(self, name: str) -> DeviceStats:
        if name not in self.devices:
            self.devices[name] = DeviceStats(name)
        return self.devices[name]

    def _skip(self, topic: str, why: str) -> None:
        """Count (in total and for the topic's device) and warn; a flood of bad messages (a misconfigured
        device) warns every 100th after 20."""
        self.skipped += 1
        device = topic_device(topic)
        if is_device_id(device) and (device in self.devices or len(self.devices) < MAX_DEVICES):
            self._device(device).bad += 1
        if self.skipped <= 20 or self.skipped % 100 == 0:
            log.warning("skipped a message on %r: %s%s", topic[:200], why,
                        " ({} skipped so far)".format(self.skipped) if self.skipped > 20 else "")

    @staticmethod
    def _identity(topic: str) -> str | None:
        """The device a message on ``topic`` may speak for: the level before poses/status/metrics."""
        if topic.rsplit("/", 1)[-1] in ("poses", "status", "metrics"):
            return topic_device(topic)
        return None  # a topic outside the {prefix}/{device}/{kind} layout: the payload's (checked) device

    def _side_message(self, topic: str, payload: bytes) -> None:
        """A status or metrics message: update the device's stats (never yielded)."""
        parse = parse_status_payload if topic.endswith("/status") else parse_metrics_payload
        if len(payload) > self.max_payload:
            self._skip(topic, "{} bytes is over the {}-byte limit (max_payload)".format(len(payload),
                                                                                         self.max_payload))
            return
        try:
            body = parse(payload, self._identity(topic))
        except MessageError as exc:
            self._skip(topic, str(exc))
            return
        if body["device"] not in self.devices and len(self.devices) >= MAX_DEVICES:
            return
        stats = self._device(body["device"])
        if topic.endswith("/status"):
            stats.status = body
        else:
            stats.metrics = body

    def handle(self, topic: str, payload: bytes, now: float | None = None) -> dict | None:
        """Check, normalise and dedupe one payload: the message, or None if skipped / duplicate. Never raises
        for anything in the payload."""
        now = time.time() if now is None else now
        if topic.endswith("/status") or topic.endswith("/metrics"):
            self._side_message(topic, payload)
            return None
        if len(payload) > self.max_payload:
            self._skip(topic, "{} bytes is over the {}-byte limit (max_payload)".format(len(payload),
                                                                                         self.max_payload))
            return None
        try:
            msg = parse_pose_payload(payload, self._identity(topic))
        except MessageError as exc:
            self._skip(topic, str(exc))
            return None
        if msg["device"] not in self.devices and len(self.devices) >= MAX_DEVICES:
            self._skip(topic, "more than {} devices".format(MAX_DEVICES))
            return None
        stats = self._device(msg["device"])
        if self.dedupe and stats.seen((msg["seq"], msg["ts"])):
            stats.duplicates += 1
            self.duplicates += 1
            return None
        stats.update(msg, now)
        return msg

    def __iter__(self) -> Iterator[dict]:
        start = last = time.time()
        try:
            while self.count is None or self.yielded < self.count:
                now = time.time()
                wait = 0.5
                if self.timeout is not None:
                    wait = min(wait, start + self.timeout - now)
                if self.idle_timeout is not None:
                    wait = min(wait, last + self.idle_timeout - now)
                if wait <= 0:
                    return
                try:
                    topic, payload, arrived = self._queue.get(timeout=wait)
                except queue.Empty:
                    continue
                msg = self.handle(topic, payload, arrived)
                if msg is not None:
                    last = time.time()
                    self.yielded += 1
                    yield msg
        finally:
            self.close()

    def table_rows(self) -> list[dict]:
        """One row per device, sorted by name: device, fps, people, latency_ms, drops, received, state."""
        return [self.devices[name].row() for name in sorted(self.devices)]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def subscribe(url: str, topic: str | list[str] = DEFAULT_TOPIC, **options) -> Subscription:
    """Subscribe to pose messages: ``for msg in subscribe("mqtt://host:1883", topic="edge-sdk/+/poses")``.

    Options: see :class:`Subscription` (qos, TLS files, username/password, count, timeout, idle_timeout, ...).
    Raises BrokerError at once if the broker cannot be reached or refuses us.
    """
    return Subscription(url, topic=topic, **options)


def format_table(rows: list[dict]) -> str:
    """The live table of ``edge-sdk subscribe`` as text."""
    header = "{:<20} {:>7} {:>7} {:>12} {:>7} {:>9} {:>5}  {}".format(
        "device", "fps", "people", "latency ms", "drops", "received", "bad", "state")
    lines = [header]
    for r in rows:
        lines.append("{:<20} {:>7.1f} {:>7d} {:>12.1f} {:>7d} {:>9d} {:>5d}  {}".format(
            r["device"][:20], r["fps"], r["people"], r["latency_ms"], r["drops"], r["received"], r.get("bad", 0),
            str(r["state"])[:20]))
    return "\n".join(lines)


def cv2_error() -> type:
    """OpenCV's exception class (ValueError where OpenCV is missing, so an ``except`` clause stays valid)."""
    try:
        import cv2

        return cv2.error
    except ImportError:
        return ValueError


def watch(url: str, topics: list[str] | None = None, json_lines: bool = False, table: bool | None = None,
          save: str | None = None, render: str | None = None, frames: str | None = None, out=None,
          table_interval: float = 0.5, **options) -> Subscription:
    """What ``edge-sdk subscribe`` does: receive, then print / save / render each message.

    ``json_lines``: one JSON line per message on ``out``; ``table``: a live table (default: when ``out`` is a
    terminal), else one human-readable line per message; ``save``: append JSON lines to a file; ``render``:
    skeleton overlays (see :class:`edge_sdk.overlay.OverlayWriter`). Returns the finished subscription (stats).
    """
    out = sys.stdout if out is None else out
    if table is None:
        table = not json_lines and hasattr(out, "isatty") and out.isatty()
    sub = subscribe(url, topic=topics or [DEFAULT_TOPIC], **options)
    writer = None
    if render:
        from edge_sdk.overlay import OverlayWriter

        writer = OverlayWriter(render, frames=frames)
    save_file = open(save, "a") if save else None
    next_table = 0.0
    try:
        for msg in sub:
            if json_lines:
                out.write(json.dumps(msg, separators=(",", ":")) + "\n")
                out.flush()
            elif table:
                now = time.time()
                if now >= next_table:
                    out.write("\x1b[H\x1b[2J" + format_table(sub.table_rows()) + "\n")
                    out.flush()
                    next_table = now + table_interval
            else:
                lat = msg.get("latency_ms") or {}
                out.write("{} #{}  {} people  {:.1f} ms  {}\n".format(
                    msg["device"], msg["seq"], len(msg["people"]),
                    float(lat.get("total", sum(lat.values()))), msg["frame"].get("source", "")))
                out.flush()
            if save_file:
                save_file.write(json.dumps(msg, separators=(",", ":")) + "\n")
                save_file.flush()
            if writer:
                try:
                    writer.write(msg)
                except (ValueError, OverflowError, ConfigError, cv2_error()) as exc:  # checked messages never get here
                    sub._skip("{}/{}/poses".format(DEFAULT_PREFIX, msg["device"]), "cannot render: {}".format(exc))
    finally:
        sub.close()
        if save_file:
            save_file.close()
        if writer:
            writer.close()
    if not json_lines:
        out.write(format_table(sub.table_rows()) + "\n")
    if sub.skipped or sub.duplicates:
        log.warning("skipped %d malformed message(s), dropped %d duplicate(s)", sub.skipped, sub.duplicates)
    return sub
