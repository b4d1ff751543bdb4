"""`edge-sdk run --mqtt` wiring: broker checked before the run, pipeline counters in the metrics topic (real
Mosquitto, real paho subscriber). Every-frame delivery is tests/test_mqtt_e2e.py."""

import json
import threading
import time

import paho.mqtt.client as paho

from edge_sdk.testing import make_oracle


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
