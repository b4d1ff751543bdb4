"""MQTT benchmark: messages/s and end-to-end latency through a local Mosquitto, JSON vs compact encoding.

For pose payloads of 1, 10 and 50 people (1920x1080 frame), it runs our on-device publisher
(``MqttPublisher``) into a real Mosquitto started here on a free loopback port, and a subscriber that
decodes every message (``edge_sdk.runtime.messages.decode_message``):

- throughput: N messages written back to back; messages/s until the subscriber has decoded all of them;
- latency: messages paced at ``--rate``/s; end to end = capture timestamp in the message -> decoded at the
  subscriber (encode + publish + broker + receive + decode), p50 / p95 / p99;
- payload size.

It prints one table and the compact/JSON ratios measured in the same run::

    python benchmarks/mqtt.py [--qos 1] [--messages 1000] [--rate 50] [--latency-messages 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edge_sdk.runtime import messages  # noqa: E402
from edge_sdk.runtime.mqtt import MqttPublisher, new_client  # noqa: E402


def start_mosquitto(workdir: str) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(binary):
        sys.exit("mosquitto is not installed (apt-get install mosquitto)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = os.path.join(workdir, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
                "max_inflight_messages 0\n".format(port))
    proc = subprocess.Popen([binary, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("mosquitto did not start")


def people(n: int, rng: np.random.Generator) -> list:
    kps = rng.uniform(0, 1, (n, 17, 3)) * np.array([1920.0, 1080.0, 1.0])
    return messages.people_to_json(kps, rng.uniform(0.5, 3.0, n))


class Receiver:
    """Subscriber that decodes every payload and records (seq, latency)."""

    def __init__(self, port: int, topic: str, qos: int):
        self.latencies: list[float] = []
        self.count = 0
        self.done = threading.Event()
        self.expected = 0
        self.client = new_client("")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos)
        self.client.loop_start()
        time.sleep(0.3)

    def reset(self, expected: int) -> None:
        self.latencies, self.count, self.expected = [], 0, expected
        self.done.clear()

    def _on_message(self, client, userdata, msg):
        decoded = messages.decode_message(msg.payload)
        self.latencies.append(time.time() - decoded["ts"])
        self.count += 1
        if self.count >= self.expected:
            self.done.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def bench(port: int, n_people: int, encoding: str, args) -> dict:
    rng = np.random.default_rng(n_people)
    body = people(n_people, rng)
    device = "bench-{}-{}".format(encoding, n_people)
    rx = Receiver(port, "edge-sdk/{}/poses".format(device), args.qos)
    pub = MqttPublisher("mqtt://127.0.0.1:{}".format(port), device, qos=args.qos, encoding=encoding,
                        queue_size=args.messages + 10, inflight=100).connect(5)
    sample = messages.build_pose_message(device, 0, time.time(), 1920, 1080, "bench", body, {"infer": 5.0})
    size = len(pub.encode(sample))

    rx.reset(args.messages)  # throughput: back to back
    t0 = time.perf_counter()
    for seq in range(args.messages):
        pub.write(messages.build_pose_message(device, seq, time.time(), 1920, 1080, "bench", body,
                                              {"infer": 5.0}))
    rx.done.wait(120)
    throughput = rx.count / (time.perf_counter() - t0)

    rx.reset(args.latency_messages)  # latency: paced below saturation
    period = 1.0 / args.rate
    start = time.perf_counter()
    for seq in range(args.latency_messages):
        while time.perf_counter() < start + seq * period:
            time.sleep(period / 10)
        pub.write(messages.build_pose_message(device, 10 ** 6 + seq, time.time(), 1920, 1080, "bench", body,
                                              {"infer": 5.0}))
    rx.done.wait(60)
    lat = np.array(rx.latencies) * 1000.0
    pub.close()
    rx.close()
    return {"people": n_people, "encoding": encoding, "bytes": size, "msg_per_s": throughput,
            "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
            "p99": float(np.percentile(lat, 99)), "received": len(lat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--messages", type=int, default=1000, help="messages for the throughput run")
    parser.add_argument("--latency-messages", type=int, default=200, help="messages for the latency run")
    parser.add_argument("--rate", type=float, default=50.0, help="messages/s of the latency run")
    parser.add_argument("--people", type=int, nargs="+", default=[1, 10, 50])
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="edge-sdk-bench-mqtt-")
    broker, port = start_mosquitto(workdir)
    rows = []
    try:
        for n in args.people:
            for encoding in ("json", "compact"):
                rows.append(bench(port, n, encoding, args))
    finally:
        broker.terminate()
        broker.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)

    print("MQTT through a local Mosquitto, QoS {}, {} msgs back to back, latency at {:.0f} msg/s".format(
        args.qos, args.messages, args.rate))
    print("{:>6} {:>8} {:>9} {:>10} {:>9} {:>9} {:>9}".format(
        "people", "encoding", "bytes", "msg/s", "p50 ms", "p95 ms", "p99 ms"))
    for r in rows:
        print("{people:>6} {encoding:>8} {bytes:>9} {msg_per_s:>10.0f} {p50:>9.2f} {p95:>9.2f} {p99:>9.2f}".format(
            **r))
    print("\ncompact vs JSON (same run):")
    for n in args.people:
        j = next(r for r in rows if r["people"] == n and r["encoding"] == "json")
        c = next(r for r in rows if r["people"] == n and r["encoding"] == "compact")
        print("  {:>2} people: {:.2f}x smaller, {:.2f}x msg/s, p50 latency x{:.2f}".format(
            n, j["bytes"] / c["bytes"], c["msg_per_s"] / j["msg_per_s"], c["p50"] / j["p50"]))


if __name__ == "__main__":
    main()
