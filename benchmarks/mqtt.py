"""MQTT benchmark: messages/s and end-to-end latency through a local Mosquitto, JSON vs compact encoding.

For pose payloads of 1, 10 and 50 people (1920x1080 frame), it runs our on-device publisher
(``MqttPublisher``) into a real Mosquitto started here on a free loopback port, and a subscriber that
decodes every message (``edge_sdk.runtime.messages.decode_message``):

- throughput: N messages written back to back; messages/s until the subscriber has decoded all of them;
- latency: messages paced at ``--rate``/s; end to end = capture timestamp in the message -> decoded at the
  subscriber (encode + publish + broker + receive + decode), p50 / p95 / p99;
- payload size.

Every (people, encoding) pair is one side of benchmarks/runner.py: the sides are interleaved round by round,
the compact/JSON ratios taken round by round, reported as median and range, and written to
benchmarks/results/mqtt.json::

    python benchmarks/mqtt.py [--qos 1] [--messages 1000] [--rate 50] [--latency-messages 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import local_broker, runner  # noqa: E402
from edge_sdk.runtime import messages  # noqa: E402
from edge_sdk.runtime.mqtt import MqttPublisher, new_client  # noqa: E402


def start_mosquitto(workdir: str) -> tuple[subprocess.Popen, int]:
    return local_broker.start_mosquitto(workdir, "max_queued_messages 0\nmax_inflight_messages 0\n")


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


def measure(port: int, n_people: int, encoding: str, args) -> dict:
    """One measurement of one side: throughput (back to back) and latency (paced), fresh connections."""
    rng = np.random.default_rng(n_people)
    body = people(n_people, rng)
    device = "bench-{}-{}".format(encoding, n_people)
    rx = Receiver(port, "edge-sdk/{}/poses".format(device), args.qos)
    pub = MqttPublisher("mqtt://127.0.0.1:{}".format(port), device, qos=args.qos, encoding=encoding,
                        queue_size=args.messages + 10, inflight=100).connect(5)
    try:
        rx.reset(args.messages)  # throughput: back to back
        t0 = time.perf_counter()
        for seq in range(args.messages):
            pub.write(messages.build_pose_message(device, seq, time.time(), 1920, 1080, "bench", body,
                                                  {"infer": 5.0}))
        if not rx.done.wait(120):
            raise SystemExit("{} {} people: {} of {} messages arrived".format(encoding, n_people, rx.count,
                                                                            args.messages))
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
    finally:
        pub.close()
        rx.close()
    return {"msg/s": throughput, "p50 ms": float(np.percentile(lat, 50)), "p99 ms": float(np.percentile(lat, 99))}


def payload_bytes(n_people: int, encoding: str) -> int:
    body = people(n_people, np.random.default_rng(n_people))
    message = messages.build_pose_message("bench", 0, time.time(), 1920, 1080, "bench", body, {"infer": 5.0})
    return len(messages.encode_compact(message) if encoding == "compact" else messages.encode_json(message))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--messages", type=int, default=1000, help="messages for the throughput run")
    parser.add_argument("--latency-messages", type=int, default=200, help="messages for the latency run")
    parser.add_argument("--rate", type=float, default=50.0, help="messages/s of the latency run")
    parser.add_argument("--people", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (after one warm-up round)")
    parser.add_argument("--out", default=None, help="result JSON (default benchmarks/results/mqtt.json)")
    args = parser.parse_args(argv)

    workdir = tempfile.mkdtemp(prefix="edge-sdk-bench-mqtt-")
    broker, port = start_mosquitto(workdir)
    pairs = [(n, encoding) for n in args.people for encoding in ("json", "compact")]
    sides = {"{} {}, {}".format(n, "person" if n == 1 else "people", encoding):
             (lambda n=n, encoding=encoding: measure(port, n, encoding, args)) for n, encoding in pairs}
    try:
        measured = runner.interleave(sides, args.rounds, warmup=1,
                                     progress=lambda line: print("  mqtt:", line, flush=True))
    finally:
        broker.terminate()
        broker.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)

    rows = [{"label": side, "metrics": dict({k: measured.metric(side, k) for k in measured.values[side]},
                                            bytes=runner.summary([payload_bytes(n, encoding)]))}
            for side, (n, encoding) in zip(sides, pairs)]
    ratios = []
    for n in args.people:
        who = "{} {}".format(n, "person" if n == 1 else "people")
        json_side, compact_side = who + ", json", who + ", compact"
        ratios.append({"label": "compact / JSON msg/s, " + who,
                       "summary": measured.ratio(compact_side, json_side, "msg/s")})
        ratios.append({"label": "JSON / compact bytes, " + who, "summary": runner.summary(
            [payload_bytes(n, "json") / payload_bytes(n, "compact")])})
    doc = runner.result("mqtt", "MQTT through a local Mosquitto: compact vs JSON pose messages",
                        "JSON encoding (edge_sdk.runtime.messages), same publisher, broker and subscriber", measured,
                        rows, ratios, {"qos": args.qos, "messages": args.messages, "latency messages":
                                       args.latency_messages, "latency rate msg/s": args.rate, "rounds": args.rounds})
    runner.print_result(doc)
    print("wrote", runner.write(doc, args.out))


if __name__ == "__main__":
    main()
