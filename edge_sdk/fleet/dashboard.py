"""Watch a fleet live in a browser: ``edge-sdk dashboard --mqtt mqtt://broker --port 8080``.

An MQTT client (paho thread) keeps each camera's latest skeletons, fps, latency, drops and its retained
``status`` (online/offline, the last will says offline); an asyncio server (stdlib only) serves one page
(``static/dashboard.html`` + ``dashboard.js``, no CDN, nothing fetched from elsewhere) and pushes what changed
to every open page over a WebSocket every ``push_interval`` seconds. Read-only; it listens on 127.0.0.1
unless told otherwise (it has no login: put it behind your reverse proxy to share it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.parse
from importlib import resources

from edge_sdk.errors import BrokerError, ConfigError
from edge_sdk.fleet import websocket
from edge_sdk.runtime.message_check import MessageError, parse_pose_payload
from edge_sdk.runtime.mqtt import DEFAULT_PREFIX, configure_client, connect_error, new_client, parse_url
from edge_sdk.runtime.skeleton import COCO17_SKELETON
from edge_sdk.subscriber import DeviceStats

log = logging.getLogger("edge_sdk.dashboard")

MAX_REQUEST_HEAD = 16 * 1024
MAX_DEVICES = 1000
MAX_STATUS_BYTES = 64 * 1024
STATIC_FILES = {"/": ("dashboard.html", "text/html; charset=utf-8"),
                "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8")}


class FleetState:
    """What the page shows, per device; updated from the MQTT thread, read from the server's loop."""

    def __init__(self, max_devices: int = MAX_DEVICES):
        self.max_devices = max_devices
        self.devices: dict[str, DeviceStats] = {}
        self.latest: dict[str, dict] = {}
        self.version: dict[str, int] = {}
        self.bad = 0
        self._counter = 0
        self._lock = threading.Lock()

    def _device(self, name: str) -> DeviceStats | None:
        if name not in self.devices:
            if len(self.devices) >= self.max_devices:
                return None
            self.devices[name] = DeviceStats(name)
        return self.devices[name]

    def _touch(self, name: str) -> None:
        self._counter += 1
        self.version[name] = self._counter

    def on_payload(self, topic: str, payload: bytes, now: float | None = None) -> None:
        """One MQTT message on PREFIX/DEVICE/{poses,status,metrics}; bad ones are counted and dropped."""
        now = time.time() if now is None else now
        parts = topic.split("/")
        if len(parts) < 3:
            return
        device, kind = parts[-2], parts[-1]
        if kind == "poses":
            try:
                msg = parse_pose_payload(payload, topic_device=device)
            except MessageError as exc:
                self.bad += 1
                if self.bad <= 20 or self.bad % 1000 == 0:
                    log.warning("not shown, message on %s: %s", topic[:120], exc)
                return
        else:
            if len(payload) > MAX_STATUS_BYTES:
                return
            try:
                body = json.loads(payload.decode("utf-8")) if payload else {}
            except (UnicodeDecodeError, ValueError):
                self.bad += 1
                return
            if not isinstance(body, dict):
                return
        with self._lock:
            stats = self._device(device)
            if stats is None:
                return
            if kind == "poses":
                stats.update(msg, now)
                self.latest[device] = {"seq": msg["seq"], "ts": msg["ts"], "w": msg["frame"]["w"],
                                       "h": msg["frame"]["h"],
                                       "people": [p["keypoints"] for p in msg["people"]], "arrived": now}
            elif kind == "status":
                stats.status = body
            elif kind == "metrics":
                stats.metrics = body
            else:
                return
            self._touch(device)

    def snapshot(self, since: int = 0, now: float | None = None) -> tuple[int, list[dict]]:
        """(current version, the devices changed after version ``since``), sorted by name."""
        now = time.time() if now is None else now
        with self._lock:
            changed = sorted(d for d, v in self.version.items() if v > since)
            out = []
            for name in changed:
                stats, latest = self.devices[name], self.latest.get(name, {})
                state = stats.status.get("state")
                out.append({
                    "device": name, "state": state if state in ("online", "offline") else "unknown",
                    "fps": round(stats.fps, 1), "latency_ms": round(stats.latency_ms, 1), "drops": stats.drops,
                    "received": stats.received, "people": latest.get("people", []),
                    "w": latest.get("w", 0), "h": latest.get("h", 0), "seq": latest.get("seq"),
                    "last_message": latest.get("arrived")})
            return self._counter, out


class MqttFeed:
    """The dashboard's MQTT client: poses (QoS 0: the newest matters), status (retained) and metrics."""

    def __init__(self, url: str, state: FleetState, prefix: str = DEFAULT_PREFIX, tls_ca: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None, username: str | None = None,
                 password: str | None = None, connect_timeout: float = 10.0):
        self.host, self.port, use_tls, url_user = parse_url(url)
        self.state = state
        self.topics = [(prefix + "/+/poses", 0), (prefix + "/+/status", 1), (prefix + "/+/metrics", 0)]
        self._connected = threading.Event()
        self._rc = None
        self._client = new_client()
        configure_client(self._client, use_tls, tls_ca, tls_cert, tls_key, username or url_user, password)
        self._client.on_connect = self._on_connect
        self._client.on_message = lambda client, userdata, msg: state.on_payload(msg.topic, msg.payload)
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise connect_error(self.host, self.port, exc, use_tls) from exc
        self._client.loop_start()
        if not self._connected.wait(connect_timeout) or self._rc != 0:
            self.close()
            raise BrokerError("the MQTT broker at {}:{} did not accept the dashboard (code {})".format(
                self.host, self.port, self._rc))

    def _on_connect(self, client, userdata, flags, rc, *rest):
        self._rc = int(getattr(rc, "value", rc))
        if self._rc == 0:
            client.subscribe(self.topics)
        self._connected.set()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _static(name: str) -> bytes:
    return resources.files("edge_sdk.fleet").joinpath("static", name).read_bytes()


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = ("HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n").format(status, content_type, len(body))
    return head.encode("ascii") + body


class DashboardServer:
    """HTTP + WebSocket on asyncio streams: the page, its script, ``/state.json`` and the ``/ws`` feed."""

    def __init__(self, state: FleetState, push_interval: float = 0.2):
        self.state = state
        self.push_interval = push_interval
        self.files = {path: (_static(name), kind) for path, (name, kind) in STATIC_FILES.items()}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _version = request_line.split(" ", 2)
            headers = {}
            for line in header_lines:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            path = urllib.parse.urlsplit(target).path
            if method != "GET":
                writer.write(_response("405 Method Not Allowed", b"read-only dashboard: GET only\n"))
            elif path == "/ws":
                await self._websocket(reader, writer, headers)
            elif path == "/state.json":
                _, devices = self.state.snapshot()
                writer.write(_response("200 OK", json.dumps({"devices": devices}).encode(), "application/json"))
            elif path in self.files:
                body, kind = self.files[path]
                writer.write(_response("200 OK", body, kind))
            else:
                writer.write(_response("404 Not Found", b"not found\n"))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ValueError,
                ConnectionError):
            pass
        finally:
            writer.close()

    async def _websocket(self, reader, writer, headers: dict) -> None:
        origin = headers.get("origin")
        if origin and urllib.parse.urlsplit(origin).netloc != headers.get("host"):
            writer.write(_response("403 Forbidden", b"cross-origin WebSocket refused\n"))
            return
        try:
            writer.write(websocket.handshake_response(headers))
        except websocket.WebSocketError as exc:
            writer.write(_response("400 Bad Request", (str(exc) + "\n").encode()))
            return
        await writer.drain()
        listener = asyncio.ensure_future(websocket.serve_client_frames(reader, writer))
        version = 0
        first = True
        try:
            while not listener.done():
                version_now, devices = self.state.snapshot(since=version)
                if devices or first:
                    await websocket.send_text(writer, json.dumps(
                        {"now": time.time(), "skeleton": COCO17_SKELETON if first else None, "devices": devices},
                        separators=(",", ":")))
                    first = False
                version = version_now
                await asyncio.wait([listener], timeout=self.push_interval)
        except ConnectionError:
            pass
        finally:
            listener.cancel()

    async def serve(self, host: str, port: int, started=None) -> None:
        server = await asyncio.start_server(self.handle, host, port, limit=MAX_REQUEST_HEAD)
        if started:
            started(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()


def run_dashboard(mqtt_url: str, host: str = "127.0.0.1", port: int = 8080, prefix: str = DEFAULT_PREFIX,
                  push_interval: float = 0.2, started=None, **mqtt_options) -> None:
    """Serve the dashboard until Ctrl-C. ``started(port)`` is called once it listens."""
    if not 0 <= port <= 65535:
        raise ConfigError("--port must be between 0 and 65535")
    if not 0.02 <= push_interval <= 10:
        raise ConfigError("push interval must be between 0.02 and 10 s")
    state = FleetState()
    feed = MqttFeed(mqtt_url, state, prefix=prefix, **mqtt_options)
    try:
        asyncio.run(DashboardServer(state, push_interval).serve(host, port, started))
    except OSError as exc:
        raise ConfigError("cannot listen on {}:{}: {}".format(host, port, exc.strerror or exc)) from None
    except KeyboardInterrupt:
        pass
    finally:
        feed.close()
