"""Publish pose messages from the device over MQTT (paho-mqtt 1.x or 2.x).

Topics (DESIGN.md, "MQTT"), with ``prefix`` = ``edge-sdk`` by default:

- ``{prefix}/{device_id}/poses``   one pose message per frame (JSON schema v1, or the compact encoding)
- ``{prefix}/{device_id}/status``  retained ``{"state": "online"|"offline", ...}``; the last will says offline
- ``{prefix}/{device_id}/metrics`` periodic fps / latency / drops, plus the delivery counters of this publisher

Delivery: with QoS 1, messages produced while the broker is unreachable wait in a bounded
:class:`~edge_sdk.runtime.delivery_queue.DeliveryQueue` (memory, optionally spilling to disk) and leave in
order when it returns; at most ``inflight`` messages are handed to paho at once, and paho re-sends the
unacknowledged ones after a reconnect (subscribers drop the duplicates by ``(device, seq, ts)``). With
QoS 0, messages produced while offline are dropped and counted. Reconnects back off exponentially with
jitter. One network thread owns the connection; ``write`` may be called from any thread.
"""

import json
import logging
import os
import random
import socket
import ssl
import threading
import time
import warnings
from typing import Any, Dict, Optional, Tuple

from edge_sdk.errors import BrokerError, ConfigError
from edge_sdk.runtime import messages
from edge_sdk.runtime.delivery_queue import DeliveryQueue
from edge_sdk.runtime.ids import check_device_id  # also imported from here by broker_config
from edge_sdk.runtime.message_check import finite_or_none
from edge_sdk.runtime.redact import redact_url

log = logging.getLogger("edge_sdk.mqtt")

DEFAULT_PREFIX = "edge-sdk"
PASSWORD_ENV = "EDGE_SDK_MQTT_PASSWORD"
AT_RISK_S = 30.0  # after a broker lost its state: acknowledged messages counted at risk for this long
SHUTDOWN_FLUSH_S = 2.0  # on SIGTERM/SIGINT: the flash agent SIGKILLs after 10 s, we must be out within ~5 s
_SCHEMES = {"mqtt": (1883, False), "tcp": (1883, False), "mqtts": (8883, True), "ssl": (8883, True)}


# --------------------------------------------------------------------------------------------------------------
# paho-mqtt 1.x / 2.x compatibility (detected by feature, not by version string)

def paho_major_version() -> int:
    """2 if the installed paho-mqtt has the 2.x callback API (``CallbackAPIVersion``), else 1."""
    import paho.mqtt.client as paho

    return 2 if hasattr(paho, "CallbackAPIVersion") else 1


def new_client(client_id: str = "", clean_session: bool = True, callback_api: Optional[int] = None) -> Any:
    """A paho ``Client`` on either major version.

    ``callback_api``: None picks the newest callback style the library has (2 on paho 2.x); 1 forces the
    1.x callback signatures (on paho 2.x through ``CallbackAPIVersion.VERSION1``). Our callbacks accept
    both styles (see :func:`_reason_code`), so this only matters for tests of the 1.x path.
    """
    try:
        import paho.mqtt.client as paho
    except ImportError:
        raise ConfigError("MQTT needs paho-mqtt: `python3 -m pip install paho-mqtt` (1.x or 2.x)") from None

    if hasattr(paho, "CallbackAPIVersion"):
        if callback_api == 1:
            with warnings.catch_warnings():  # VERSION1 is deprecated in 2.x; we ask for it on purpose
                warnings.simplefilter("ignore", DeprecationWarning)
                return paho.Client(paho.CallbackAPIVersion.VERSION1, client_id=client_id, clean_session=clean_session)
        return paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
    return paho.Client(client_id=client_id, clean_session=clean_session)


def _session_present(flags):
    """The CONNACK session-present flag from paho 1.x (a dict) or 2.x (``ConnectFlags``)."""
    if isinstance(flags, dict):
        return bool(flags.get("session present"))
    return bool(getattr(flags, "session_present", False))


def _reason_code(value):
    """int of a 1.x ``rc`` or a 2.x ``ReasonCode``/``MQTTErrorCode``."""
    if hasattr(value, "value"):
        return int(value.value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


_CONNACK_HINTS = {
    1: "the broker does not speak MQTT 3.1.1",
    2: "the client id was rejected",
    3: "the broker is unavailable",
    4: "bad username or password: check --mqtt-username and --mqtt-password-file / $" + PASSWORD_ENV,
    5: "not authorised: check the username/password or client certificate, and the broker's ACL",
    134: "bad username or password: check --mqtt-username and --mqtt-password-file / $" + PASSWORD_ENV,
    135: "not authorised: check the username/password or client certificate, and the broker's ACL",
}


def parse_url(url: str) -> Tuple[str, int, bool, Optional[str]]:
    """``mqtt://[user@]host[:port]`` (or mqtts://, tcp://, ssl://) -> (host, port, use_tls, username)."""
    if "://" not in url:
        url = "mqtt://" + url
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme not in _SCHEMES:
        raise ConfigError("MQTT URL {!r}: unknown scheme {!r}; use mqtt://HOST:1883 or mqtts://HOST:8883".format(
            url, scheme))
    rest = rest.rstrip("/")
    username = None
    if "@" in rest:
        userinfo, rest = rest.rsplit("@", 1)
        if ":" in userinfo:
            raise ConfigError("MQTT URL {!r} holds a password in clear; pass it with --mqtt-password-file or "
                              "${} instead".format(redact_url(url), PASSWORD_ENV))
        username = userinfo or None
    default_port, use_tls = _SCHEMES[scheme]
    host, port = rest, default_port
    if rest.startswith("["):  # [ipv6]:port
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            port = tail[1:]
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    try:
        port = int(port)
    except ValueError:
        raise ConfigError("MQTT URL {!r}: port {!r} is not a number".format(url, port)) from None
    if not host:
        raise ConfigError("MQTT URL {!r} has no host; expected mqtt://HOST:PORT".format(url))
    return host, port, use_tls, username


def read_password(password_file: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> Optional[str]:
    """The broker password from a file (first line) or ``$EDGE_SDK_MQTT_PASSWORD``; never from argv."""
    env = os.environ if env is None else env
    if password_file:
        try:
            with open(password_file) as f:
                lines = f.read().splitlines()
        except (IOError, OSError) as exc:
            raise ConfigError("cannot read MQTT password file {}: {}".format(password_file, exc)) from exc
        return lines[0] if lines else ""
    return env.get(PASSWORD_ENV) or None


def configure_client(client: Any, use_tls: bool, tls_ca: Optional[str] = None, tls_cert: Optional[str] = None,
                     tls_key: Optional[str] = None, username: Optional[str] = None,
                     password: Optional[str] = None) -> None:
    """TLS and credentials on a paho client (shared by the publisher and the host subscriber)."""
    for flag, path in (("--tls-ca", tls_ca), ("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path and not os.path.isfile(path):
            raise ConfigError("{} {}: no such file".format(flag, path))
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("--tls-cert and --tls-key go together (a client certificate needs its key)")
    if use_tls or tls_ca or tls_cert:
        try:
            client.tls_set(ca_certs=tls_ca, certfile=tls_cert, keyfile=tls_key, cert_reqs=ssl.CERT_REQUIRED)
        except (ssl.SSLError, ValueError, IOError, OSError) as exc:
            raise ConfigError("cannot load the TLS files (CA {}, cert {}, key {}): {}".format(
                tls_ca, tls_cert, tls_key, exc)) from exc
    if username or password:
        client.username_pw_set(username, password)


def connect_error(host: str, port: int, exc: BaseException, use_tls: bool) -> BrokerError:
    """A BrokerError that says what failed and what to check."""
    what = "{}:{}".format(host, port)
    if isinstance(exc, ssl.SSLError) or "CERTIFICATE" in str(exc).upper() or "SSL" in type(exc).__name__.upper():
        hint = ("TLS handshake failed ({}): check --tls-ca is the CA that signed the broker's certificate, the "
                "host name matches the certificate, and --tls-cert/--tls-key are a client certificate the broker "
                "trusts".format(exc))
    elif isinstance(exc, socket.timeout):
        hint = "no answer ({}): check the host/port, a firewall, and that the broker is running".format(exc)
    elif isinstance(exc, (ConnectionRefusedError,)):
        hint = ("connection refused: is the broker running and listening on port {}? (e.g. `mosquitto -p {}`; "
                "TLS listeners are usually 8883, plain 1883)".format(port, port))
    elif isinstance(exc, socket.gaierror):
        hint = "cannot resolve host {!r}: check the broker address".format(host)
    else:
        hint = "{}: check the broker address, that it is running, and TLS settings ({})".format(
            exc, "TLS on" if use_tls else "TLS off")
    return BrokerError("cannot connect to the MQTT broker at {}: {}".format(what, hint))


# --------------------------------------------------------------------------------------------------------------
# command-line arguments (shared by `edge-sdk run` and anything else that publishes)

def add_broker_arguments(group: Any) -> None:
    """TLS and credential options shared by the publisher and ``edge-sdk subscribe``."""
    group.add_argument("--tls-ca", metavar="FILE", default=None, help="CA certificate that signed the broker's")
    group.add_argument("--tls-cert", metavar="FILE", default=None, help="client certificate (PEM)")
    group.add_argument("--tls-key", metavar="FILE", default=None, help="client private key (PEM)")
    group.add_argument("--mqtt-username", default=None, help="broker user name")
    group.add_argument("--mqtt-password-file", metavar="FILE", default=None,
                       help="file whose first line is the broker password (or set $" + PASSWORD_ENV + ")")


def add_mqtt_arguments(parser: Any) -> None:
    """Add the MQTT publishing options to an argparse parser (or argument group)."""
    group = parser.add_argument_group("MQTT publishing") if hasattr(parser, "add_argument_group") else parser
    group.add_argument("--mqtt", metavar="URL", default=None,
                       help="broker to publish to: mqtt://HOST[:1883] or mqtts://HOST[:8883] (TLS)")
    group.add_argument("--device-id", default=None,
                       help="this device's id (one topic level); default: the host name")
    group.add_argument("--topic-prefix", default=DEFAULT_PREFIX,
                       help="topics are PREFIX/DEVICE/{poses,status,metrics} (default: %(default)s)")
    group.add_argument("--qos", type=int, choices=(0, 1), default=1,
                       help="1: at-least-once, queued while the broker is away (default); 0: fire and forget")
    add_broker_arguments(group)
    group.add_argument("--mqtt-queue", type=int, default=10000, metavar="N",
                       help="messages kept while the broker is unreachable (QoS 1); the oldest are dropped beyond "
                            "(default: %(default)s)")
    group.add_argument("--mqtt-spill-dir", metavar="DIR", default=None,
                       help="spill the offline queue beyond --mqtt-queue-memory messages to files in DIR")
    group.add_argument("--mqtt-queue-memory", type=int, default=None, metavar="N",
                       help="messages held in memory before spilling to --mqtt-spill-dir (default: all)")
    group.add_argument("--mqtt-encoding", choices=("json", "compact"), default="json",
                       help="payload encoding: json (schema v1) or compact (binary, ~4x smaller; see docs/mqtt.md)")
    group.add_argument("--mqtt-connect-timeout", type=float, default=10.0, metavar="S",
                       help="give up if the broker cannot be reached at start within S seconds")
    group.add_argument("--mqtt-flush-timeout", type=float, default=30.0, metavar="S",
                       help="at the end, wait up to S seconds for queued messages to reach the broker")
    group.add_argument("--mqtt-metrics-interval", type=float, default=5.0, metavar="S",
                       help="publish fps / latency / drops to PREFIX/DEVICE/metrics every S seconds (0: never)")
    return parser


def publisher_from_args(args: Any, status_info: Optional[Dict[str, Any]] = None,
                        connect: bool = True) -> "MqttPublisher":
    """A :class:`MqttPublisher` from parsed :func:`add_mqtt_arguments` options, connected (``connect=True``:
    BrokerError at once if the broker cannot be reached); None without ``--mqtt``.

    The retained status message names the model/bundle and its target and precision (from the bundle's
    manifest.json when there is one), updated with ``status_info``.
    """
    if not getattr(args, "mqtt", None):
        return None
    device_id = args.device_id or socket.gethostname().split(".")[0]
    password = read_password(args.mqtt_password_file)
    publisher = MqttPublisher(
        args.mqtt, device_id, prefix=args.topic_prefix, qos=args.qos,
        tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
        username=args.mqtt_username, password=password,
        queue_size=args.mqtt_queue, queue_memory=getattr(args, "mqtt_queue_memory", None),
        spill_dir=getattr(args, "mqtt_spill_dir", None), encoding=getattr(args, "mqtt_encoding", "json"),
        status_info=dict(_status_from_args(args), **(status_info or {})),
        connect_timeout=getattr(args, "mqtt_connect_timeout", 10.0),
        metrics_interval=getattr(args, "mqtt_metrics_interval", 5.0),
        flush_timeout=getattr(args, "mqtt_flush_timeout", 30.0),
        update_lock=_update_lock(args),
    )
    if connect:
        publisher.connect()
    return publisher


def _status_from_args(args):
    """model / target for the retained status, from --model or --bundle (and its manifest.json)."""
    info = {}
    model = getattr(args, "model", None) or getattr(args, "bundle", None)
    if model:
        info["model"] = os.path.basename(str(model).rstrip("/"))
    bundle = getattr(args, "bundle", None)
    manifest = os.path.join(str(bundle), "manifest.json") if bundle else None
    if manifest and os.path.isfile(manifest):
        try:
            with open(manifest) as f:
                data = json.load(f)
            if isinstance(data.get("target"), str):
                info["target"] = data["target"]
            precision = data.get("precision")
            if isinstance(precision, dict) and isinstance(precision.get("used"), str):
                info["precision"] = precision["used"]
        except (IOError, OSError, ValueError):
            pass
    if getattr(args, "target", None):
        info.setdefault("target", args.target)
    return info


# --------------------------------------------------------------------------------------------------------------

def _update_lock(args):
    """The lock `edge-sdk flash` waits for before stopping us (beside the health file it gave us)."""
    if not getattr(args, "health_file", None):
        return None
    from edge_sdk.runtime.update_lock import UpdateLock, lock_path_for

    return UpdateLock(lock_path_for(args.health_file))


class _MetricsWindow(object):
    """fps, people and mean latency per stage since the last metrics; seq gaps (frames dropped before they
    reached the publisher) since the start."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last_seq = None
        self.gaps = 0  # cumulative, like the delivery counters
        self._reset(time.time())

    def _reset(self, now):
        self.start = now
        self.count = 0
        self.people = 0
        self.latency = {}

    def add(self, message):
        with self._lock:
            self.count += 1
            self.people += len(message.get("people", ()))
            for stage, ms in (message.get("latency_ms") or {}).items():
                self.latency[stage] = self.latency.get(stage, 0.0) + float(ms)
            seq = message.get("seq")
            if isinstance(seq, int):
                if self._last_seq is not None and seq > self._last_seq + 1:
                    self.gaps += seq - self._last_seq - 1
                self._last_seq = seq

    def summary(self):
        with self._lock:
            now = time.time()
            span = max(now - self.start, 1e-6)
            n = max(self.count, 1)
            out = {"fps": round(self.count / span, 2), "frames": self.count,
                   "people": round(self.people / n, 2), "dropped_frames": self.gaps,
                   "latency_ms": {k: round(v / n, 2) for k, v in self.latency.items()}}
            self._reset(now)
            return out


class MqttPublisher(object):
    """Publishes one device's poses, status and metrics; survives broker outages (see module docstring).

    Usage::

        pub = MqttPublisher("mqtt://broker:1883", "cam-01", qos=1, status_info={"model": "tinyvgg"})
        pub.connect(timeout=10)          # BrokerError if unreachable
        pub.write(message_dict)          # per frame, any thread, never blocks on the network
        pub.publish_metrics({"fps": 29.7})
        pub.close()                      # flush, retained status offline, disconnect
    """

    def __init__(self, url, device_id, prefix=DEFAULT_PREFIX, qos=1, tls_ca=None, tls_cert=None, tls_key=None,
                 username=None, password=None, queue_size=10000, queue_memory=None, spill_dir=None,
                 encoding="json", status_info=None, inflight=20, keepalive=30, reconnect_min=0.5,
                 reconnect_max=30.0, client_id=None, callback_api=None, connect_timeout=10.0,
                 metrics_interval=0.0, flush_timeout=30.0, update_lock=None):
        if qos not in (0, 1):
            raise ConfigError("--qos must be 0 or 1, got {!r}".format(qos))
        if encoding not in ("json", "compact"):
            raise ConfigError("MQTT encoding must be 'json' or 'compact', got {!r}".format(encoding))
        if not url:
            raise ConfigError("no MQTT broker URL given (--mqtt mqtt://HOST:1883)")
        self.device_id = check_device_id(str(device_id))
        self.prefix = prefix.strip("/")
        self.host, self.port, use_tls, url_user = parse_url(url)
        self.url = url
        self.qos = qos
        self.encoding = encoding
        self.topic_poses = "{}/{}/poses".format(self.prefix, self.device_id)
        self.topic_status = "{}/{}/status".format(self.prefix, self.device_id)
        self.topic_metrics = "{}/{}/metrics".format(self.prefix, self.device_id)
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.flush_timeout = flush_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.inflight_limit = max(1, int(inflight))
        self.status_info = dict(status_info or {})
        username = username or url_user
        if password and not username:
            username = self.device_id  # per-device credentials: the user name is the device id by default
        self.queue = DeliveryQueue(queue_size, memory_limit=queue_memory, spill_dir=spill_dir, guard=update_lock)

        self._client = new_client(client_id or "edge-sdk-{}-{}".format(self.device_id, os.getpid()),
                                  clean_session=False, callback_api=callback_api)  # see _on_connect
        configure_client(self._client, use_tls, tls_ca, tls_cert, tls_key, username, password)
        self._use_tls = use_tls or bool(tls_ca or tls_cert)
        self._client.max_inflight_messages_set(self.inflight_limit + 4)  # + status / metrics
        self._client.will_set(self.topic_status, self._status_payload("offline"), qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

        self._lock = threading.Lock()      # guards the queue hand-off and _inflight; taken BEFORE paho's locks
        self._inflight = {}                # mid -> True, messages handed to paho and not yet acknowledged
        self._acks = []                    # mids acknowledged (appended by paho's thread, drained by ours)
        self._connected = False
        self._session_up = False
        self._connack = None
        self._stop = threading.Event()
        self._thread = None
        self._closed = False
        self.metrics_interval = float(metrics_interval or 0)
        self._window = _MetricsWindow()
        self._external_metrics = False  # the caller publishes metrics itself: no automatic ones
        self._next_metrics = time.time() + self.metrics_interval
        self._had_session = False
        self._at_risk_until = 0.0
        self.counters = {"published": 0, "delivered": 0, "dropped_queue_full": 0, "dropped_offline": 0,
                         "broker_state_lost": 0, "at_risk": 0, "lost_at_close": 0,
                         "reconnects": 0, "bytes": 0}

    # ----------------------------------------------------------------------------------------------------- paho
    def _on_connect(self, client, userdata, flags, rc, *rest):
        # _connected is set by the network thread only after loop() returns: paho re-sends the messages that
        # were in flight AFTER this callback, and new ones must not overtake them
        self._connack = _reason_code(rc)
        if self._connack == 0:
            self._session_up = True
            # our session is persistent (clean_session=False): a broker that answers "no session" on a
            # reconnect has lost its state (restarted without persistence): what it acknowledged but had not
            # yet passed on is gone, and so is every subscriber's session (docs/mqtt.md, "Delivery guarantee")
            if self._had_session and not _session_present(flags):
                self.counters["broker_state_lost"] += 1
                self._at_risk_until = time.time() + AT_RISK_S
                log.warning("the MQTT broker %s:%s lost its state (restarted without persistence?): messages it "
                            "had acknowledged may be lost, and the next %.0f s of messages are at risk until "
                            "subscribers are back; counted as broker_state_lost / at_risk (see docs/mqtt.md)",
                            self.host, self.port, AT_RISK_S)
            self._had_session = True
            client.publish(self.topic_status, self._status_payload("online"), qos=1, retain=True)

    def _on_disconnect(self, client, userdata, *args):
        self._session_up = False
        self._connected = False

    def _on_publish(self, client, userdata, mid, *rest):
        self._acks.append(mid)  # list.append is atomic; never take self._lock here (paho holds its own)

    def _status_payload(self, state):
        from edge_sdk import __version__

        status = {"state": state, "device": self.device_id, "version": __version__, "ts": time.time(),
                  "encoding": self.encoding, "qos": self.qos}
        status.update(self.status_info)
        return json.dumps(status, separators=(",", ":"))

    # ---------------------------------------------------------------------------------------------- lifecycle
    def connect(self, timeout=None):
        """Connect (blocking up to ``timeout`` s) and start the network thread; BrokerError if that fails."""
        if self._thread is not None:  # already connected (publisher_from_args connects): nothing to do
            return self
        timeout = self.connect_timeout if timeout is None else timeout
        deadline = time.time() + timeout
        if hasattr(type(self._client), "connect_timeout"):  # paho 2.x; 1.x has no per-client setting
            self._client.connect_timeout = max(0.5, min(timeout, 30.0))
        try:
            self._client.connect(self.host, self.port, keepalive=self.keepalive)
        except (socket.error, OSError, ssl.SSLError) as exc:
            raise connect_error(self.host, self.port, exc, self._use_tls) from exc
        while self._connack is None and time.time() < deadline:
            rc = self._client.loop(timeout=0.05)
            if _reason_code(rc) != 0 and self._connack is None:
                break
        if self._connack is None:
            self._client.disconnect()
            raise BrokerError("the MQTT broker at {}:{} accepted the TCP connection but did not complete the MQTT "
                              "handshake within {:.0f} s: check it is an MQTT listener and the TLS settings "
                              "(mqtts:// for TLS ports)".format(self.host, self.port, timeout))
        if self._connack != 0:
            self._client.disconnect()
            hint = _CONNACK_HINTS.get(self._connack, "connection refused with code {}".format(self._connack))
            raise BrokerError("the MQTT broker at {}:{} refused device {!r}: {}".format(
                self.host, self.port, self.device_id, hint))
        self._connected = self._session_up
        self._thread = threading.Thread(target=self._network_loop, name="edge-sdk-mqtt", daemon=True)
        self._thread.start()
        return self

    def _network_loop(self):
        """The one thread that drives paho: reconnects (backoff + jitter), reads acks, feeds the queue."""
        delay = self.reconnect_min
        while not self._stop.is_set():
            if self._client.socket() is None:
                self._connected = False
                try:
                    self._connack = None
                    self._client.reconnect()
                    self.counters["reconnects"] += 1
                except (socket.error, OSError, ssl.SSLError) as exc:
                    wait = random.uniform(0.5, 1.0) * delay  # jitter: a fleet must not reconnect in lockstep
                    log.warning("MQTT broker %s:%s unreachable (%s); retrying in %.1f s (%d queued)",
                                self.host, self.port, exc, wait, self.stats()["queued"])
                    self._stop.wait(wait)
                    delay = min(self.reconnect_max, delay * 2)
                    continue
            rc = self._client.loop(timeout=0.02)
            if _reason_code(rc) != 0:
                self._session_up = False
            self._connected = self._session_up
            if self._connected:
                delay = self.reconnect_min
            elif self._connack not in (None, 0):  # refused (credentials, ACL): back off too
                self._stop.wait(random.uniform(0.5, 1.0) * delay)
                delay = min(self.reconnect_max, delay * 2)
            self._drain_acks()
            self._feed()
            if self.metrics_interval > 0 and not self._external_metrics and time.time() >= self._next_metrics:
                self._next_metrics = time.time() + self.metrics_interval
                if self._connected:
                    self.publish_metrics({})

    def _drain_acks(self):
        if not self._acks:
            return
        with self._lock:
            while self._acks:
                mid = self._acks.pop(0)
                if self._inflight.pop(mid, None):
                    self.counters["delivered"] += 1
                    if self._at_risk_until and time.time() < self._at_risk_until:
                        self.counters["at_risk"] += 1

    def _feed(self):
        """Hand queued messages to paho while connected, at most ``inflight_limit`` unacknowledged at once."""
        if not self._connected:
            return
        with self._lock:
            while len(self._inflight) < self.inflight_limit:
                item = self.queue.pop()
                if item is None:
                    break
                self._send(item[0], item[1])

    def _send(self, topic, payload):
        """Publish (caller holds self._lock)."""
        info = self._client.publish(topic, payload, qos=self.qos)
        self.counters["published"] += 1
        self.counters["bytes"] += len(payload)
        if self.qos == 1:
            self._inflight[info.mid] = True
        elif _reason_code(info.rc) == 0:
            self.counters["delivered"] += 1
        else:  # QoS 0 on a connection that has just died
            self.counters["dropped_offline"] += 1

    # ---------------------------------------------------------------------------------------------- publishing
    def encode(self, message):
        """Pose message dict -> payload bytes in this publisher's encoding."""
        if self.encoding == "compact":
            return messages.encode_compact(message)
        return messages.encode_json(message)

    def write(self, message):
        """Publish one pose message (dict, schema v1) to ``{prefix}/{device}/poses``; never blocks on I/O."""
        if self._thread is None and not self._closed:
            self.connect()  # used as a plain sink without connect(): connect on the first message
        payload = self.encode(message)
        self._window.add(message)
        with self._lock:
            if self._connected and not len(self.queue) and len(self._inflight) < self.inflight_limit:
                self._send(self.topic_poses, payload)
                return
            if self.qos == 0 and not self._connected:
                self.counters["dropped_offline"] += 1
                return
            before = self.queue.dropped
            self.queue.put(self.topic_poses, payload)
            self.counters["dropped_queue_full"] += self.queue.dropped - before

    def delivery_summary(self):
        """One line for the end of a run: what was delivered, and every loss the device knows of."""
        stats = self.stats()
        lost = stats["dropped_queue_full"] + stats["dropped_offline"] + stats.get("lost_at_close", 0)
        line = "mqtt: {} published, {} acknowledged by the broker, {} lost on the device ({} queue full, {} " \
               "offline at QoS 0, {} still queued at exit)".format(
                   stats["published"], stats["delivered"], lost, stats["dropped_queue_full"],
                   stats["dropped_offline"], stats.get("lost_at_close", 0))
        if stats["spill_errors"]:
            line += "; spill dir unusable ({} failed writes)".format(stats["spill_errors"])
        if stats["broker_state_lost"]:
            line += "; the broker lost its state {} time(s): {} acknowledged messages at risk".format(
                stats["broker_state_lost"], stats["at_risk"])
        return line

    def stats(self):
        """Delivery counters: published, delivered, dropped_queue_full, dropped_offline, queued, ... ."""
        with self._lock:
            stats = dict(self.counters)
            stats["queued"] = len(self.queue) + len(self._inflight)
            stats["spilled"] = self.queue.spilled
            stats["spill_errors"] = self.queue.spill_errors
        stats["connected"] = bool(self._connected)
        return stats

    def publish_metrics(self, metrics=None):
        """Publish metrics: fps / people / latency / frame drops seen by ``write`` since the last call, the
        delivery counters, and whatever ``metrics`` adds or overrides. Runs every ``metrics_interval`` s by itself
        until a caller passes its own ``metrics`` (the pipeline does), then the caller sets the pace."""
        if metrics:
            self._external_metrics = True
        metrics = metrics or {}
        body = self._window.summary()  # what this publisher saw since the last metrics
        body.update(metrics)
        stats = self.stats()
        body.setdefault("device", self.device_id)
        body.setdefault("ts", time.time())
        body["queued"] = stats["queued"]
        body["dropped_queue_full"] = stats["dropped_queue_full"]
        body["dropped_offline"] = stats["dropped_offline"]
        body["delivered"] = stats["delivered"]
        body["reconnects"] = stats["reconnects"]
        body["spill_errors"] = stats["spill_errors"]
        body["broker_state_lost"] = stats["broker_state_lost"]
        body["at_risk"] = stats["at_risk"]
        body = finite_or_none(body)  # no NaN / Infinity on the wire
        if self._connected:  # metrics are a snapshot: a stale one is not worth queueing
            self._client.publish(self.topic_metrics, json.dumps(body, separators=(",", ":"), allow_nan=False), qos=0)
        return body

    def health(self):
        """Delivery counters for the health file: what was lost or is at risk, and why."""
        stats = self.stats()
        out = {key: stats.get(key, 0) for key in ("published", "delivered", "queued", "dropped_queue_full",
                                                  "dropped_offline", "spill_errors", "lost_at_close", "reconnects",
                                                  "broker_state_lost", "at_risk")}
        out["connected"] = stats["connected"]
        if self.queue.spill_error:
            out["spill_error"] = self.queue.spill_error
        return {"mqtt": out}

    def flush(self, timeout=10.0):
        """Wait until every queued message is acknowledged (QoS 1) or ``timeout`` s pass; True if all left."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self._lock:
                empty = not len(self.queue) and not self._inflight
            if empty and (self._thread is not None or self.qos == 0):
                return True
            if self._thread is None or not self._thread.is_alive():
                return empty
            time.sleep(0.01)
        return False

    def close(self, timeout=None):
        """Flush (up to ``timeout`` s, default ``flush_timeout``), publish the retained ``offline`` status,
        disconnect, stop the network thread."""
        timeout = self.flush_timeout if timeout is None else timeout
        self._closed = True
        if self._thread is None:
            self.queue.close()
            return
        flushed = self.flush(timeout)
        if not flushed:
            with self._lock:
                self.counters["lost_at_close"] = len(self.queue) + len(self._inflight)
            log.warning("MQTT: %d messages not delivered before close (lost)", self.counters["lost_at_close"])
        if self._connected:
            info = self._client.publish(self.topic_status, self._status_payload("offline"), qos=1, retain=True)
            end = time.time() + min(timeout, 5.0)
            while not info.is_published() and self._connected and time.time() < end:
                time.sleep(0.01)
        self._stop.set()
        self._thread.join(min(5.0, timeout + 1.0))  # a daemon: a reconnect stuck in connect() must not hold us
        self._thread = None
        try:
            self._client.disconnect()
            self._client.loop(timeout=0.1)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        self.queue.close()

    def shutdown(self, timeout=SHUTDOWN_FLUSH_S):
        """Close within about ``timeout`` s whatever the broker does (SIGTERM: a service manager kills us soon
        after); what is still queued is lost and counted in ``lost_at_close``."""
        self.close(timeout=min(timeout, self.flush_timeout))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
