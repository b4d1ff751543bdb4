"""Fleet load generator: N simulated cameras at 30 fps through a real Mosquitto into `edge-sdk record`.

Two measurements, each through a Mosquitto started here (recorder settings: ``max_inflight_messages 1000``,
``max_queued_messages 0``; see docs/ingest.md) and the real ``edge-sdk record`` command:

- **live** (the goal): ``--devices`` cameras publish realistic pose messages (people from the real COCO layouts
  in tests/data, QoS 1, capture time in ``ts``) at ``--fps`` each for ``--seconds``, paced in real time by
  ``--publishers`` processes (each one MQTT connection carrying its share of the cameras' topics), while the
  recorder runs with ``--workers``. Printed: messages/s per worker, end-to-end lag (capture ``ts`` -> row
  written, from the ``recorded`` column) p50/p99, duplicates dropped, lost (published - distinct rows).
- **drain** (scaling): ``--drain`` messages wait in the broker for each worker count of ``--scale`` (the
  workers' persistent sessions, filled while they are away); then the workers start and empty them.
  Printed: messages/s of each worker count (messages / the longest worker's first-message-to-last-write
  time) and its ratio to 1 worker, measured in the same run, rounds interleaved (``--rounds``), median and
  range. Only broker + recorder run during a drain.

    python benchmarks/fleet.py [--devices 100 --fps 30 --seconds 20 --workers 1] [--scale 1,2 --drain 20000]
    python benchmarks/fleet.py --store postgres ...     # PostgreSQL (a throwaway local server) instead of SQLite
    python benchmarks/fleet.py --store postgresql://user@host/db ...      # an existing PostgreSQL database
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import local_broker  # noqa: E402
from edge_sdk.fleet.store import open_store  # noqa: E402
from edge_sdk.runtime import messages  # noqa: E402

LAYOUTS = os.path.join(REPO, "tests", "data", "coco_layouts", "person_keypoints_val2014_fakekeypoints100_results.json")


def start_mosquitto(workdir: str) -> tuple[subprocess.Popen, int]:
    return local_broker.start_mosquitto(workdir, "max_inflight_messages 1000\nmax_queued_messages 0\n")


def real_people() -> list[list]:
    """People per image from the real COCO layouts (tests/data), as message ``people`` lists."""
    with open(LAYOUTS) as f:
        annotations = json.load(f)
    by_image: dict[int, list] = {}
    for ann in annotations:
        kps = np.asarray(ann["keypoints"], np.float64).reshape(17, 3)
        kps[:, 2] = np.where(kps[:, 2] > 0, 0.5 + 0.25 * kps[:, 2], 0.0)  # visibility -> a detector-like score
        by_image.setdefault(ann["image_id"], []).append((kps, ann["score"]))
    return [messages.people_to_json([k for k, _ in people], [s for _, s in people])
            for people in by_image.values()]


def publisher_main(port: int, devices: list[str], fps: float, seconds: float, ready, go, start_at, results) -> None:
    """One publishing process: its cameras, one message each per 1/fps tick, in real time."""
    import paho.mqtt.client as paho

    layouts = real_people()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    ticks = int(round(seconds * fps))
    late = []
    sent = 0
    infos = []
    # the JSON encoder's output, split around seq and ts: the generator must stay cheaper than the recorder
    templates = [[messages.encode_json(messages.build_pose_message(device, 123456789, 0.5, 640, 480, "bench",
                                                                   people, {"total": 20.0})).split(b"123456789", 1)
                  for people in layouts] for device in devices]
    topics = ["edge-sdk/{}/poses".format(device) for device in devices]
    ready.put(len(devices))
    go.wait()
    start_at = start_at.value
    while time.time() < start_at:
        time.sleep(0.005)
    for tick in range(ticks):
        due = start_at + tick / fps
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        late.append(max(0.0, -delay))
        for d, topic in enumerate(topics):
            head, tail = templates[d][(tick // 15 + d) % len(layouts)]
            payload = head + str(tick).encode() + tail.replace(b'"ts":0.5', b'"ts":' + repr(time.time()).encode(), 1)
            infos.append(client.publish(topic, payload, qos=1))
            sent += 1
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    results.put({"sent": sent, "late_p99_ms": float(np.percentile(late, 99) * 1000), "cpu_s": time.process_time()})


def start_recorder(port: int, store: str, workers: int, group: str, stats: str, idle: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "edge_sdk", "record", "--mqtt", "mqtt://127.0.0.1:{}".format(port),
                             "--to", store, "--workers", str(workers), "--group", group, "--stats", stats,
                             "--idle-timeout", str(idle)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    lines = []
    while not any("recording" in line for line in lines):
        line = proc.stderr.readline()
        if not line:
            sys.exit("the recorder did not start:\n" + "".join(lines))
        lines.append(line)
    return proc


def finish_recorder(proc: subprocess.Popen, stats: str) -> list[dict]:
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        sys.exit("the recorder failed:\n" + err)
    with open(stats) as f:
        return json.load(f)


def fresh_store(store: str, workdir: str, name: str) -> str:
    if store == "sqlite":
        return os.path.join(workdir, name + ".sqlite")
    with open_store(store) as db:  # PostgreSQL: empty the tables of this database
        db.db.execute("TRUNCATE frames, people")
        db.db.commit()
    return store


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far (Linux /proc)."""
    with open("/proc/{}/stat".format(pid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def live(port: int, args, workdir: str, broker_pid: int) -> None:
    store = fresh_store(args.store, workdir, "live")
    stats_file = os.path.join(workdir, "live-stats.json")
    recorder = start_recorder(port, store, args.workers, "live", stats_file, idle=10.0)
    devices = ["cam-{:03d}".format(i) for i in range(args.devices)]
    ctx = multiprocessing.get_context("spawn")
    results, ready, go, start_at = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
    procs = [ctx.Process(target=publisher_main, args=(port, devices[i::args.publishers], args.fps, args.seconds,
                                                      ready, go, start_at, results)) for i in range(args.publishers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    start_at.value = time.time() + 0.5
    broker_cpu = cpu_seconds(broker_pid)
    go.set()
    published = [results.get(timeout=args.seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    workers = finish_recorder(recorder, stats_file)
    broker_cpu = cpu_seconds(broker_pid) - broker_cpu
    with open_store(store, create=False) as db:
        rows, distinct = db.select("SELECT count(*), count(DISTINCT device || ':' || seq) FROM frames", [])[0]
        lag = np.array([r[0] for r in db.select("SELECT recorded - ts FROM frames", [])]) * 1000.0
    sent = sum(p["sent"] for p in published)
    if not len(lag):
        sys.exit("the recorder stored nothing")
    print("\nlive: {} cameras x {:g} fps for {:g} s = {} messages offered ({:.0f}/s), {} worker(s), store {}".format(
        args.devices, args.fps, args.seconds, sent, sent / args.seconds, args.workers,
        "SQLite" if args.store == "sqlite" else "PostgreSQL"))
    for w in workers:
        print("  worker {worker}: {received} received, {stored} stored, {duplicates} duplicates, {bad} bad, "
              "{messages_per_s:.0f} msg/s while active".format(**w))
    print("  lag capture -> row written: p50 {:.0f} ms, p99 {:.0f} ms, max {:.0f} ms".format(
        np.percentile(lag, 50), np.percentile(lag, 99), lag.max()))
    print("  publisher lateness p99 (the generator's own scheduling): {:.0f} ms".format(
        max(p["late_p99_ms"] for p in published)))
    print("  rows {}, distinct (device, seq) {}, duplicates dropped {}, lost {}".format(
        rows, distinct, sum(w["duplicates"] for w in workers), sent - distinct))
    us = {"recorder": sum(w["cpu_s"] for w in workers), "broker": broker_cpu,
          "generator": sum(p["cpu_s"] for p in published)}
    print("  CPU per message: " + ", ".join("{} {:.0f} us".format(k, v / sent * 1e6) for k, v in us.items()) +
          "; at {:.0f} msg/s the recorder needs {:.2f} core(s), all three {:.2f} of the {} here".format(
              args.devices * args.fps, us["recorder"] / sent * args.devices * args.fps,
              sum(us.values()) / sent * args.devices * args.fps, os.cpu_count()))
    goal = rows == distinct == sent and np.percentile(lag, 99) < 1000
    print("  lag p99 < 1 s and nothing lost at {} msg/s: {}{}".format(
        int(args.devices * args.fps), "yes" if goal else "NO",
        " (the goal: >= 3000 msg/s into SQLite)" if args.devices * args.fps >= 3000 and args.store == "sqlite" else ""))


def drain_round(port: int, args, workdir: str, workers: int, tag: str) -> float:
    """Fill the sessions of ``workers`` workers with ``args.drain`` messages, then time their emptying."""
    import paho.mqtt.client as paho

    store = fresh_store(args.store, workdir, "drain-" + tag)
    group = "drain-" + tag
    stats_file = os.path.join(workdir, "drain-{}.json".format(tag))
    finish_recorder(start_recorder(port, store, workers, group, stats_file, idle=0.5), stats_file)  # sessions
    layouts = real_people()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    for i in range(args.drain):
        device = "cam-{:03d}".format(i % args.devices)
        msg = messages.build_pose_message(device, i // args.devices, time.time(), 640, 480, "bench",
                                          layouts[i % len(layouts)], {"total": 20.0})
        infos.append(client.publish("edge-sdk/{}/poses".format(device), messages.encode_json(msg), qos=1))
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()
    stats = finish_recorder(start_recorder(port, store, workers, group, stats_file, idle=1.0), stats_file)
    with open_store(store, create=False) as db:
        rows = db.select("SELECT count(*) FROM frames", [])[0][0]
    if rows != args.drain or sum(s["stored"] for s in stats) != args.drain:
        print("  warning: drain {} stored {} of {}".format(tag, rows, args.drain))
    return rows / max(s["active_s"] for s in stats)  # first message received -> last batch written


def drain(port: int, args, workdir: str) -> None:
    counts = [int(n) for n in args.scale.split(",")]
    rates: dict[int, list[float]] = {n: [] for n in counts}
    for r in range(args.rounds):
        for n in (counts if r % 2 == 0 else counts[::-1]):  # interleaved, alternating order
            rates[n].append(drain_round(port, args, workdir, n, "{}w-{}".format(n, r)))
    base = np.array(rates[counts[0]])
    print("\ndrain: {} queued messages per round, {} round(s), store {} (baseline: {} worker(s))".format(
        args.drain, args.rounds, "SQLite" if args.store == "sqlite" else "PostgreSQL", counts[0]))
    for n in counts:
        ratios = np.array(rates[n]) / base
        print("  {} worker(s): {:.0f} msg/s (range {:.0f}-{:.0f}); ratio to {} worker(s): {:.2f}x (range "
              "{:.2f}-{:.2f})".format(n, np.median(rates[n]), min(rates[n]), max(rates[n]), counts[0],
                                      np.median(ratios), ratios.min(), ratios.max()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1, help="recorder workers of the live run")
    parser.add_argument("--publishers", type=int, default=2, help="load generator processes")
    parser.add_argument("--store", default="sqlite",
                        help="sqlite (a file here), postgres (a throwaway local server) or a postgresql:// URL")
    parser.add_argument("--scale", default="1,2", help="worker counts of the drain runs ('' to skip)")
    parser.add_argument("--drain", type=int, default=20000, help="queued messages per drain run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved drain rounds")
    parser.add_argument("--skip-live", action="store_true")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="edge-sdk-bench-fleet-")
    broker, port = start_mosquitto(workdir)
    pg_server = None
    if args.store == "postgres":  # a throwaway local server (the tests' helper), fsync off like the tests
        sys.path.insert(0, os.path.join(REPO, "tests"))
        from postgres import PostgresServer

        pg_server = PostgresServer().start()
        args.store = pg_server.create_database("bench")
    try:
        print("load: {} on {} CPU(s), load average {:.1f}".format(sys.platform, os.cpu_count(), os.getloadavg()[0]))
        if not args.skip_live:
            live(port, args, workdir, broker.pid)
        if args.scale:
            drain(port, args, workdir)
    finally:
        if pg_server:
            pg_server.stop()
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
