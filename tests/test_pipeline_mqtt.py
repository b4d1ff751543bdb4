"""`edge-sdk run` on an oracle video publishing to a real Mosquitto; a real paho subscriber checks every frame."""

import json
import threading
import time

import numpy as np
import paho.mqtt.client as paho

from edge_sdk.runtime.messages import decode_json
from edge_sdk.testing import make_oracle

TOLERANCE_PX = 1.0


class Subscriber:
    """A paho client (1.x or 2.x API) collecting every message of ``topic`` (QoS 1)."""

    def __init__(self, host, port, topic):
        self.messages = []
        self.connected = threading.Event()
        if hasattr(paho, "CallbackAPIVersion"):
            self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        else:  # pragma: no cover - paho-mqtt 1.x
            self.client = paho.Client()
        self.client.on_connect = lambda client, userdata, flags, rc, *rest: (client.subscribe(topic, qos=1),
                                                                            self.connected.set())
        self.client.on_message = lambda client, userdata, msg: self.messages.append((msg.topic, msg.payload))
        self.client.connect(host, port)
        self.client.loop_start()
        assert self.connected.wait(10), "subscriber could not connect"
        time.sleep(0.2)  # let the SUBACK arrive before the runtime publishes

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def test_run_publishes_every_frame_in_order_with_the_right_keypoints(tmp_path, mosquitto, edge_sdk_cli):
    case = make_oracle(tmp_path, num_frames=15, people=2)
    subscriber = Subscriber(mosquitto.host, mosquitto.port, "edge-sdk/#")
    try:
        proc = edge_sdk_cli("run", "--model", case.model_path, "--source", case.video_path, "--mqtt", mosquitto.url,
                            "--device-id", "cam-01", "--qos", "1", timeout=120)
        assert proc.returncode == 0, proc.stderr
        deadline = time.time() + 10
        while time.time() < deadline and sum(t.endswith("/poses") for t, _ in subscriber.messages) < 15:
            time.sleep(0.05)
    finally:
        subscriber.close()
    poses = [decode_json(payload) for topic, payload in subscriber.messages if topic == "edge-sdk/cam-01/poses"]
    assert [m["seq"] for m in poses] == list(range(15))
    for message in poses:
        assert message["device"] == "cam-01" and message["frame"]["source"] == case.video_path.name
        got = np.array([p["keypoints"] for p in message["people"]], np.float32)
        want = case.expected[message["seq"]]
        assert len(got) == len(want)
        for person in want:
            present = person[:, 2] > 0
            errors = [np.abs(g[present, :2] - person[present, :2]).max() for g in got]
            best = got[int(np.argmin(errors))]
            assert min(errors) <= TOLERANCE_PX and np.all(best[~present, 2] == 0)
    statuses = [json.loads(payload) for topic, payload in subscriber.messages if topic == "edge-sdk/cam-01/status"]
    assert statuses and "offline" in json.dumps(statuses[-1])


def test_run_with_an_unreachable_broker_fails_before_running(tmp_path, edge_sdk_cli):
    from conftest import free_port

    case = make_oracle(tmp_path, num_frames=2, video=None)
    proc = edge_sdk_cli("run", "--model", case.model_path, "--source", "synthetic?frames=2",
                        "--mqtt", "mqtt://127.0.0.1:{}".format(free_port()), "--mqtt-connect-timeout", "1",
                        timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error:" in proc.stderr and "127.0.0.1" in proc.stderr


def test_metrics_carry_the_pipeline_counters(tmp_path, mosquitto, edge_sdk_cli):
    case = make_oracle(tmp_path, num_frames=2, video=None)
    subscriber = Subscriber(mosquitto.host, mosquitto.port, "edge-sdk/cam-03/metrics")
    try:
        proc = edge_sdk_cli("run", "--model", case.model_path, "--source", "synthetic:live?fps=30&w=160&h=120",
                            "--max-frames", 45, "--mqtt", mosquitto.url, "--device-id", "cam-03",
                            "--mqtt-metrics-interval", "0.3", "--quiet", timeout=120)
        assert proc.returncode == 0, proc.stderr
        time.sleep(0.3)
    finally:
        subscriber.close()
    metrics = [json.loads(payload) for _topic, payload in subscriber.messages]
    assert len(metrics) >= 2, "one metrics message per interval, from one schedule"
    assert all({"captured", "drops", "frames", "fps", "delivered"} <= set(m) for m in metrics)
    assert [m["captured"] for m in metrics] == sorted(m["captured"] for m in metrics)
