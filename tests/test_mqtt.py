"""On-device MQTT publisher against a real Mosquitto: topics, status/will, QoS 1 through outages, queue bound."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.errors import BrokerError, ConfigError
from edge_sdk.runtime import messages
from edge_sdk.runtime.delivery_queue import DeliveryQueue
from edge_sdk.runtime.mqtt import MqttPublisher, new_client, parse_url
from edge_sdk.subscriber import subscribe
from tests.conftest import REPO, free_port


def pose(device, seq, n_people=2, w=640, h=480):
    rng = np.random.default_rng(seq)
    kps = rng.uniform(0, 1, (n_people, 17, 3)) * np.array([w, h, 1.0])
    return messages.build_pose_message(device, seq, 1000.0 + seq / 30.0, w, h, "test.mp4",
                                       messages.people_to_json(kps, np.ones(n_people)), {"infer": 1.5})


def publisher(url, device="cam-01", **kw):
    kw.setdefault("reconnect_min", 0.1)
    kw.setdefault("reconnect_max", 0.5)
    return MqttPublisher(url, device, **kw)


class Recorder:
    """A raw paho subscriber (not ours) that records (topic, payload, retain) of everything."""

    def __init__(self, broker, topic="edge-sdk/#", client_id="", clean=True, callback_api=None):
        self.got = []
        self.client = new_client(client_id, clean_session=clean, callback_api=callback_api)
        self.client.on_message = lambda c, u, m: self.got.append((m.topic, m.payload, m.retain))
        self.client.on_connect = lambda c, *a: c.subscribe(topic, 1)
        self.client.reconnect_delay_set(0.1, 0.2)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        deadline = time.time() + 5
        while not self.client.is_connected() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)

    def wait(self, predicate, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline and not predicate(self.got):
            time.sleep(0.02)
        return predicate(self.got)

    def poses(self):
        return [messages.decode_message(p) for t, p, _ in self.got if t.endswith("/poses")]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("qos,callback_api,encoding", [(1, None, "json"), (0, 1, "compact")])
def test_poses_status_and_metrics_reach_their_topics(mosquitto, qos, callback_api, encoding):
    """Both paho callback styles (1.x signatures through CallbackAPIVersion.VERSION1, 2.x), both encodings."""
    rec = Recorder(mosquitto, callback_api=callback_api)
    pub = publisher(mosquitto.url, qos=qos, callback_api=callback_api, encoding=encoding,
                    status_info={"target": "jetson-orin-nano", "model": "tinyvgg"}).connect(5)
    sent = [pose("cam-01", i) for i in range(20)]
    for msg in sent:
        pub.write(msg)
    body = pub.publish_metrics({"fps": 29.5, "dropped_frames": 1})
    pub.close()
    assert rec.wait(lambda got: sum(t.endswith("/status") for t, _, _ in got) >= 2 and
                    any(t.endswith("/metrics") for t, _, _ in got))
    rec.close()

    got = rec.poses()
    assert [m["seq"] for m in got] == list(range(20))
    q = 0.25 if encoding == "compact" else 0.0  # compact: quarter-pixel coordinates
    for a, b in zip(got, sent):
        assert np.allclose(np.array([p["keypoints"] for p in a["people"]])[..., :2],
                           np.array([p["keypoints"] for p in b["people"]])[..., :2], atol=q / 2 + 1e-6)
    statuses = [json.loads(p) for t, p, _ in rec.got if t == "edge-sdk/cam-01/status"]
    assert statuses[0]["state"] == "online" and statuses[-1]["state"] == "offline"
    assert statuses[0]["target"] == "jetson-orin-nano" and statuses[0]["model"] == "tinyvgg"
    assert "version" in statuses[0]
    metrics = [json.loads(p) for t, p, _ in rec.got if t == "edge-sdk/cam-01/metrics"][0]
    assert metrics["fps"] == 29.5 and metrics["dropped_queue_full"] == 0 and "queued" in metrics
    assert body["device"] == "cam-01"
    # the retained status is what a late subscriber sees first
    late = Recorder(mosquitto, topic="edge-sdk/+/status")
    assert late.wait(lambda got: got)
    late.close()
    assert json.loads(late.got[0][1])["state"] == "offline" and late.got[0][2]


def test_last_will_says_offline_when_the_device_dies(mosquitto):
    """A device that vanishes without close(): the broker publishes its retained will, `offline`."""
    code = ("import sys, time; sys.path.insert(0, {!r}); from edge_sdk.runtime.mqtt import MqttPublisher; "
            "p = MqttPublisher({!r}, 'cam-dead', keepalive=1).connect(5); print('up', flush=True); "
            "time.sleep(30)").format(str(REPO), mosquitto.url)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        rec = Recorder(mosquitto, topic="edge-sdk/cam-dead/status")
        assert rec.wait(lambda got: got and json.loads(got[-1][1])["state"] == "online")
        proc.kill()
        assert rec.wait(lambda got: json.loads(got[-1][1])["state"] == "offline")
        rec.close()
    finally:
        proc.kill()
        proc.wait()


def test_broker_unreachable_at_start_is_a_clear_error():
    port = free_port()
    pub = publisher("mqtt://127.0.0.1:{}".format(port))
    with pytest.raises(BrokerError) as err:
        pub.connect(timeout=2)
    text = str(err.value)
    assert "127.0.0.1:{}".format(port) in text and "running" in text


def test_bad_urls_and_flags_are_config_errors():
    with pytest.raises(ConfigError, match="scheme"):
        parse_url("http://host")
    with pytest.raises(ConfigError, match="password"):
        parse_url("mqtt://user:secret@host")
    assert parse_url("mqtts://broker.local") == ("broker.local", 8883, True, None)
    with pytest.raises(ConfigError, match="topic level"):
        MqttPublisher("mqtt://127.0.0.1:1", "cam/01")
    with pytest.raises(ConfigError, match="no such file"):
        MqttPublisher("mqtt://127.0.0.1:1", "cam-01", tls_ca="/nonexistent/ca.crt")


def test_broker_down_for_5_s_at_qos1_every_message_arrives_once_in_order(mosquitto_factory, tmp_path, request):
    """Stream at ~100 msg/s, stop the broker for 5 s, restart it: the subscriber gets 0..N-1 exactly once.

    The broker keeps sessions on disk (persistence) and the subscriber has a persistent session, so what
    the broker accepted before it stopped is not lost on its side; the device queues (spilling to disk past
    50 messages) what it produces meanwhile, and paho re-sends what was in flight (deduplicated by seq).
    """
    # mosquitto started as root drops to its own user before writing the store: it needs a dir it can reach
    store = Path(tempfile.mkdtemp(prefix="edge-sdk-mosquitto-"))
    store.chmod(0o777)
    request.addfinalizer(lambda: shutil.rmtree(store, ignore_errors=True))
    broker = mosquitto_factory(extra_config="persistence true\npersistence_location {}/\n".format(store))
    broker.start()
    sub = subscribe(broker.url, client_id="dashboard-1", persistent_session=True, idle_timeout=15,
                    reconnect_delay=(0.2, 1))
    pub = publisher(broker.url, qos=1, queue_size=5000, queue_memory=50, spill_dir=str(tmp_path / "spill"))
    pub.connect(5)
    n = 700
    spilled = []

    def produce():
        for i in range(n):
            pub.write(pose("cam-01", i, n_people=1))
            if i % 20 == 0:
                spilled.append(pub.stats()["spilled"])
            time.sleep(0.01)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(1.5)
    broker.restart(down_seconds=5.0)
    producer.join()
    received = []
    for msg in sub:
        received.append(msg["seq"])
        if len(received) == n:
            break
    sub.close()
    stats = pub.stats()
    pub.close()
    broker.stop()
    assert received == list(range(n))
    assert stats["reconnects"] >= 1 and stats["dropped_queue_full"] == 0
    assert max(spilled) > 0, "the offline queue never spilled to disk"
    assert not list((tmp_path / "spill").glob("*.bin"))


class LinkCutter:
    """A TCP relay between a device and the broker whose link can be cut and restored (a network outage
    that the broker and its other clients do not see)."""

    def __init__(self, broker):
        self.target = (broker.host, broker.port)
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.url = "mqtt://127.0.0.1:{}".format(self.server.getsockname()[1])
        self.up = True
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.up = False
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns = []

    def restore(self):
        self.up = True

    def close(self):
        self.cut()
        self.server.close()


def wait_until(predicate, timeout=5.0):
    deadline = time.time() + timeout
    while not predicate() and time.time() < deadline:
        time.sleep(0.02)
    return predicate()


def test_queue_bound_drops_oldest_and_reports_it(mosquitto):
    rec = Recorder(mosquitto)
    link = LinkCutter(mosquitto)
    pub = publisher(link.url, qos=1, queue_size=10).connect(5)
    pub.write(pose("cam-01", 0))
    assert pub.flush(5)  # acknowledged: nothing in flight when the link goes
    assert rec.wait(lambda got: any(t.endswith("/poses") for t, _, _ in got))
    link.cut()
    assert wait_until(lambda: not pub.stats()["connected"])
    for i in range(1, 31):
        pub.write(pose("cam-01", i))
    stats = pub.stats()
    assert stats["queued"] == 10 and stats["dropped_queue_full"] == 20
    link.restore()
    assert pub.flush(10)
    pub.publish_metrics({"fps": 1.0})
    assert rec.wait(lambda got: any(t.endswith("/metrics") for t, _, _ in got))
    pub.close()
    rec.close()
    link.close()
    assert [m["seq"] for m in rec.poses()] == [0] + list(range(21, 31))  # the oldest 20 dropped
    metrics = [json.loads(p) for t, p, _ in rec.got if t.endswith("/metrics")][-1]
    assert metrics["dropped_queue_full"] == 20 and metrics["queued"] == 0 and metrics["reconnects"] >= 1


def test_qos0_drops_while_offline_and_counts_them(mosquitto):
    link = LinkCutter(mosquitto)
    pub = publisher(link.url, qos=0).connect(5)
    link.cut()
    assert wait_until(lambda: not pub.stats()["connected"])
    for i in range(5):
        pub.write(pose("cam-01", i))
    assert pub.stats()["dropped_offline"] == 5 and pub.stats()["queued"] == 0
    pub.close(timeout=1)
    link.close()


def test_delivery_queue_spills_to_disk_in_order_and_drops_oldest(tmp_path):
    q = DeliveryQueue(max_messages=100, memory_limit=10, spill_dir=str(tmp_path), segment_size=7)
    for i in range(150):
        q.put("t", str(i).encode())
    assert len(q) == 100 and q.dropped == 50 and q.spilled > 0
    assert len(list(tmp_path.glob("edge-sdk-spill-*.bin"))) > 1
    out = []
    for i in range(20):  # interleave puts and pops: order must hold across memory and segments
        out.append(int(q.pop()[1]))
        q.put("t", str(150 + i).encode())
    while len(q):
        out.append(int(q.pop()[1]))
    assert out == list(range(50, 170))
    assert q.pop() is None and not list(tmp_path.glob("*.bin"))


def paho1_source():
    """A paho-mqtt 1.x source tree ($EDGE_SDK_TEST_PAHO1: scripts/test.sh fetches 1.6.1 before the tests run)."""
    path = os.environ.get("EDGE_SDK_TEST_PAHO1")
    if not path or not (Path(path) / "paho" / "mqtt" / "client.py").is_file():
        pytest.skip("paho-mqtt 1.6.1 sources not set up: run the tests with scripts/test.sh or set EDGE_SDK_TEST_PAHO1")
    return path


def test_paho_1x_client_library(mosquitto, tmp_path):
    """The real paho-mqtt 1.x (no CallbackAPIVersion): publisher and subscriber, in a subprocess."""
    path = paho1_source()
    code = (
        "import sys; sys.path[:0] = [{!r}, {!r}]\n"
        "import paho.mqtt.client as c; assert not hasattr(c, 'CallbackAPIVersion')\n"
        "from edge_sdk.runtime.mqtt import MqttPublisher, paho_major_version\n"
        "from edge_sdk.subscriber import subscribe\n"
        "from edge_sdk.runtime.messages import build_pose_message\n"
        "assert paho_major_version() == 1\n"
        "sub = subscribe({!r}, count=5, timeout=10)\n"
        "p = MqttPublisher({!r}, 'cam-01').connect(5)\n"
        "[p.write(build_pose_message('cam-01', i, i, 4, 4, 's', [])) for i in range(5)]\n"
        "print([m['seq'] for m in sub]); p.close()\n").format(path, str(REPO), mosquitto.url, mosquitto.url)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 1, 2, 3, 4]"


def test_publisher_from_args_connects_and_publishes_periodic_metrics(mosquitto, tmp_path, monkeypatch):
    import argparse

    from edge_sdk.runtime.mqtt import PASSWORD_ENV, add_mqtt_arguments, publisher_from_args, read_password

    parser = add_mqtt_arguments(argparse.ArgumentParser())
    parser.add_argument("--model")
    assert publisher_from_args(parser.parse_args([])) is None
    args = parser.parse_args(["--mqtt", mosquitto.url, "--device-id", "cam-9", "--qos", "0", "--model",
                              "/models/tiny.onnx", "--mqtt-metrics-interval", "0.2", "--mqtt-encoding", "compact"])
    rec = Recorder(mosquitto)
    pub = publisher_from_args(args)  # connected already
    assert pub.stats()["connected"]
    for seq in (0, 1, 2, 5, 6):  # frames 3 and 4 never reached the publisher
        pub.write(pose("cam-9", seq))
    assert rec.wait(lambda got: any(t.endswith("/metrics") and json.loads(p)["frames"] for t, p, _ in got))
    pub.close()
    rec.close()
    status = [json.loads(p) for t, p, _ in rec.got if t == "edge-sdk/cam-9/status"][0]
    assert status["model"] == "tiny.onnx" and status["encoding"] == "compact" and status["qos"] == 0
    metrics = [json.loads(p) for t, p, _ in rec.got if t.endswith("/metrics") and json.loads(p)["frames"]][0]
    assert metrics["dropped_frames"] == 2 and metrics["people"] == 2 and metrics["latency_ms"]["infer"] == 1.5
    assert [m["seq"] for m in rec.poses()] == [0, 1, 2, 5, 6]

    # the password comes from a file or the environment, never from a flag
    assert not any("--mqtt-password" == a.option_strings[0] for a in parser._actions if a.option_strings)
    (tmp_path / "pw").write_text("s3cret\n")
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert read_password(str(tmp_path / "pw")) == "s3cret" and read_password(None) == "from-env"
    with pytest.raises(BrokerError, match="127.0.0.1:{}".format(mosquitto.port + 0)):
        mosquitto.stop()
        publisher_from_args(args)


def test_status_names_the_bundle_target_and_precision(tmp_path):
    import argparse

    from edge_sdk.runtime.mqtt import _status_from_args

    bundle = tmp_path / "pose-orin"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"target": "jetson-orin-nano",
                                                      "precision": {"requested": "int8", "used": "fp16"}}))
    info = _status_from_args(argparse.Namespace(model=None, bundle=str(bundle)))
    assert info == {"model": "pose-orin", "target": "jetson-orin-nano", "precision": "fp16"}
