"""Record a fleet's pose messages into a database: ``record("mqtt://broker", "poses.sqlite", workers=4)``.

One worker = one MQTT v5 client in a shared subscription (``$share/GROUP/edge-sdk/+/poses``): the broker
splits the stream between the workers of a group, in this process or on other hosts. Each worker:

- collects messages into batches (until ``batch_size``, ``batch_seconds``, or a 5 ms pause: the broker sends
  at most its in-flight window -- Mosquitto's ``max_inflight_messages``, 20 by default -- before it waits for
  our acknowledgements), validates
  each with :func:`edge_sdk.runtime.message_check.parse_pose_payload` (a bad one is counted, logged and
  acknowledged, never stored, never fatal) and writes the batch in one transaction;
- acknowledges (QoS 1 PUBACK) only after the commit, in a persistent session (fixed client id,
  ``clean_start=False``): a worker that dies loses nothing, the broker re-delivers to it or to another
  worker, and the store's ``ON CONFLICT DO NOTHING`` keeps exactly one row per message;
- applies retention (``keep`` seconds) once a minute (worker 0 only).
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import socket
import threading
import time
from dataclasses import asdict, dataclass

from edge_sdk.errors import BrokerError, ConfigError, EdgeSdkError
from edge_sdk.fleet.store import StoreError, WriteResult, open_store
from edge_sdk.runtime.message_check import MessageError, parse_pose_payload
from edge_sdk.runtime.mqtt import DEFAULT_PREFIX, configure_client, connect_error, parse_url

log = logging.getLogger("edge_sdk.record")

DEFAULT_TOPIC = DEFAULT_PREFIX + "/+/poses"
DEFAULT_GROUP = "edge-sdk-record"
RETENTION_INTERVAL_S = 60.0
MAX_WORKERS = 64
BATCH_GAP_S = 0.005
STORE_RETRY_MAX_S = 8.0


@dataclass
class RecorderStats:
    """What one worker did. ``messages_per_s`` counts from its first message to its last write."""

    worker: int
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    bad: int = 0
    batches: int = 0
    deleted: int = 0
    active_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of this worker's process (all its threads) while it ran

    @property
    def messages_per_s(self) -> float:
        return self.received / self.active_s if self.active_s > 0 else 0.0

    def as_dict(self) -> dict:
        return dict(asdict(self), messages_per_s=round(self.messages_per_s, 1))


@dataclass
class RecorderConfig:
    """Everything a worker needs (picklable: workers may be separate processes)."""

    mqtt_url: str
    store_url: str
    topic: str = DEFAULT_TOPIC
    group: str = DEFAULT_GROUP
    client_id: str = ""
    batch_size: int = 1000
    batch_seconds: float = 0.2
    keep_s: float | None = None
    session_expiry_s: int = 3600
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    username: str | None = None
    password: str | None = None
    connect_timeout_s: float = 10.0
    idle_timeout_s: float | None = None
    timeout_s: float | None = None

    def check(self) -> None:
        if not 1 <= self.batch_size <= 100_000:
            raise ConfigError("batch size must be between 1 and 100000")
        if not 0 < self.batch_seconds <= 60:
            raise ConfigError("batch seconds must be in (0, 60]")
        if not self.group or any(c in self.group for c in "/+#$\x00 "):
            raise ConfigError("group {!r} must be one topic level (no / + # $ or spaces)".format(self.group))
        if self.topic.startswith("$share/"):
            raise ConfigError("give the plain topic filter; the recorder adds $share/GROUP/ itself")
        levels = self.topic.split("/")
        if not self.topic or len(self.topic) > 1024 or "\x00" in self.topic or any(
                ("#" in level and (level != "#" or i != len(levels) - 1)) or ("+" in level and level != "+")
                for i, level in enumerate(levels)):
            raise ConfigError("topic filter {!r} is not valid MQTT: '+' and '#' must fill a level, '#' only "
                              "last (e.g. edge-sdk/+/poses)".format(self.topic[:80]))


class Recorder:
    """One worker: an MQTT v5 shared-subscription client writing batches into a store."""

    def __init__(self, config: RecorderConfig, worker: int = 0):
        config.check()
        self.config = config
        self.worker = worker
        self.stats = RecorderStats(worker=worker)
        self._queue: queue.Queue = queue.Queue()
        self._subscribed = threading.Event()
        self._connack: int | None = None
        self._connected = threading.Event()
        self._suback: list[int] = []
        self._client = None
        self.store = open_store(config.store_url)

    # paho thread ------------------------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        self._connack = int(getattr(reason_code, "value", reason_code))
        if self._connack == 0:
            from paho.mqtt.subscribeoptions import SubscribeOptions

            topic = "$share/{}/{}".format(self.config.group, self.config.topic)
            client.subscribe([(topic, SubscribeOptions(qos=1))])
        self._connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None):
        codes = [int(getattr(rc, "value", rc)) for rc in reason_codes]
        self._suback = codes
        self._subscribed.set()

    def _on_message(self, client, userdata, msg):
        self._queue.put((msg.topic, msg.payload, msg.mid, msg.qos))

    # -----------------------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect, subscribe; BrokerError if the broker cannot be reached, refuses us or the subscription."""
        try:
            import paho.mqtt.client as paho
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
        except ImportError:
            raise ConfigError("the recorder needs paho-mqtt >= 2.0: pip install 'edge-sdk[fleet]'") from None
        if not hasattr(paho, "CallbackAPIVersion"):
            raise ConfigError("the recorder needs paho-mqtt >= 2.0 (MQTT v5 shared subscriptions, manual acks)")
        host, port, use_tls, url_user = parse_url(self.config.mqtt_url)
        client_id = self.config.client_id or "edge-sdk-record-{}-{}".format(socket.gethostname()[:40],
                                                                            self.config.group)
        client_id = "{}-{}".format(client_id, self.worker)
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=paho.MQTTv5, manual_ack=True)
        configure_client(self._client, use_tls, self.config.tls_ca, self.config.tls_cert, self.config.tls_key,
                         self.config.username or url_user, self.config.password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(self.config.session_expiry_s)  # unacked messages wait for a restart
        try:
            self._client.connect(host, port, keepalive=30, clean_start=False, properties=props)
        except OSError as exc:
            raise connect_error(host, port, exc, use_tls) from exc
        self._client.loop_start()
        timeout = self.config.connect_timeout_s
        if not self._connected.wait(timeout) or self._connack != 0:
            self.close()
            raise BrokerError("the MQTT broker at {}:{} did not accept the recorder (reason {})".format(
                host, port, self._connack))
        if not self._subscribed.wait(timeout):
            self.close()
            raise BrokerError("the MQTT broker at {}:{} did not acknowledge the subscription".format(host, port))
        if any(code >= 0x80 for code in self._suback):
            self.close()
            raise BrokerError("the MQTT broker at {}:{} refused the subscription to $share/{}/{} (reason {}): check "
                              "its ACL lets this user read the topic, and that it supports MQTT v5 shared "
                              "subscriptions (Mosquitto >= 1.6)".format(host, port, self.config.group,
                                                                       self.config.topic, self._suback))

    def _next_batch(self, wait: float) -> list:
        """Up to batch_size messages: block up to ``wait`` s for the first, then up to batch_seconds for more."""
        try:
            batch = [self._queue.get(timeout=wait)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.config.batch_seconds
        while len(batch) < self.config.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:  # a pause: the broker's in-flight window may be full, waiting for our acks -> write now
                    batch.append(self._queue.get(timeout=min(left, BATCH_GAP_S)))
                except queue.Empty:
                    break
        return batch

    def _bad(self, topic: str, why: str) -> None:
        self.stats.bad += 1
        if self.stats.bad <= 20 or self.stats.bad % 1000 == 0:
            log.warning("worker %d: not stored, message on %s: %s (%d bad so far)", self.worker, topic[:120],
                        why, self.stats.bad)

    def write_batch(self, batch: list, stop: threading.Event | None = None) -> None:
        """Validate, store in one transaction (retried while the database is unreachable), then acknowledge
        every message of the batch. Nothing is acknowledged before it is committed."""
        good = []
        for topic, payload, _mid, _qos in batch:
            parts = topic.split("/")
            try:
                good.append(parse_pose_payload(payload, topic_device=parts[-2] if len(parts) >= 2 else None))
            except MessageError as exc:
                self._bad(topic, str(exc))
        if good:
            result = self._store_with_retry(good, stop)
            self.stats.stored += result.stored
            self.stats.duplicates += result.duplicates
        self.stats.received += len(batch)
        self.stats.batches += 1
        if self._client is not None:
            for _topic, _payload, mid, qos in batch:
                if qos > 0:
                    self._client.ack(mid, qos)

    def _store_with_retry(self, messages: list[dict], stop: threading.Event | None) -> WriteResult:
        delay = 0.5
        while True:
            try:
                return self.store.write(messages)
            except StoreError as exc:
                if stop is not None and stop.is_set():
                    raise
                log.warning("worker %d: %s; retrying in %.1f s (the batch stays unacknowledged)", self.worker,
                            exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX_S)

    def run(self, stop: threading.Event | None = None) -> RecorderStats:
        """Record until ``stop`` is set, the timeout / idle timeout passes, or Ctrl-C; returns the stats."""
        if self._client is None:
            self.connect()
        start = last_message = time.monotonic()
        cpu_start = time.process_time()
        first = None
        next_retention = 0.0
        try:
            while not (stop is not None and stop.is_set()):
                now = time.monotonic()
                if self.config.timeout_s is not None and now - start >= self.config.timeout_s:
                    break
                if self.config.idle_timeout_s is not None and now - last_message >= self.config.idle_timeout_s:
                    break
                if self.config.keep_s and self.worker == 0 and now >= next_retention:
                    self.stats.deleted += self.store.delete_older_than(time.time() - self.config.keep_s)
                    next_retention = now + RETENTION_INTERVAL_S
                batch = self._next_batch(0.2)
                if batch:
                    first = first or time.monotonic()
                    self.write_batch(batch, stop)
                    last_message = time.monotonic()
                    self.stats.active_s = last_message - first
        except KeyboardInterrupt:
            pass
        finally:
            self.close()
            self.stats.cpu_s = round(time.process_time() - cpu_start, 3)
        return self.stats

    def close(self) -> None:
        """Stop receiving, store what was already received, close the store. Those last messages cannot be
        acknowledged any more (disconnected): the broker re-sends them later and the key drops them."""
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        leftover = []
        while True:
            try:
                leftover.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if leftover:  # not acknowledged (disconnected): stored now, re-delivered later, stored once
            no_retry = threading.Event()
            no_retry.set()
            try:
                self.write_batch(leftover, no_retry)
            except StoreError as exc:
                log.warning("worker %d: %d received messages not stored (%s); the broker re-sends them",
                            self.worker, len(leftover), exc)
        self.store.close()


def _worker_main(config: RecorderConfig, worker: int, results, ready, go, stop) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        recorder = Recorder(config, worker)
        recorder.connect()
        ready.put(worker)
        go.wait()  # every worker subscribed: timeouts start together
        stats = recorder.run(stop)
        results.put(stats.as_dict())
    except KeyboardInterrupt:
        results.put({"worker": worker, "error": "interrupted"})
    except Exception as exc:  # reported by the parent, which raises it
        results.put({"worker": worker, "error": "{}: {}".format(type(exc).__name__, exc)})
        ready.put(worker)


def _collect(collected: list, workers: int, results, procs, stop, stop_event) -> None:
    """Each worker's stats as it ends; ``stop`` (or one worker's error) stops them all."""
    while len(collected) < workers:
        if stop is not None and stop.is_set():
            stop_event.set()
        try:
            collected.append(results.get(timeout=0.5))
            if "error" in collected[-1]:
                stop_event.set()  # one worker failed: stop the others and report it
        except queue.Empty:
            if not any(p.is_alive() for p in procs) and results.empty():
                break


def _drain(collected: list, workers: int, results) -> None:
    """After an interrupt: the stats of the workers still stopping (each given 10 s)."""
    for _ in range(workers - len(collected)):
        try:
            collected.append(results.get(timeout=10))
        except queue.Empty:
            break


def record(config: RecorderConfig, workers: int = 1, on_ready=None, stop=None) -> list[dict]:
    """Run ``workers`` recorder workers (processes when more than one) until they stop; their stats.

    ``on_ready()`` is called once every worker has subscribed (from then on nothing published is missed).
    """
    config.check()
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError("--workers must be between 1 and {}".format(MAX_WORKERS))
    if workers == 1:
        recorder = Recorder(config, 0)
        recorder.connect()
        if on_ready:
            on_ready()
        return [recorder.run(stop).as_dict()]
    ctx = multiprocessing.get_context("spawn")
    results, ready = ctx.Queue(), ctx.Queue()
    go, stop_event = ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=_worker_main, args=(config, i, results, ready, go, stop_event), daemon=True)
             for i in range(workers)]
    for proc in procs:
        proc.start()
    collected = []
    try:
        for _ in range(workers):
            ready.get(timeout=config.connect_timeout_s + 60)
        go.set()
        if on_ready:
            on_ready()
        _collect(collected, workers, results, procs, stop, stop_event)
    except KeyboardInterrupt:
        stop_event.set()
        _drain(collected, workers, results)
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
    errors = [r["error"] for r in collected if "error" in r and r["error"] != "interrupted"]
    if errors:
        raise EdgeSdkError("recorder worker failed: {}".format(errors[0]))
    return sorted((r for r in collected if "error" not in r), key=lambda r: r["worker"])
