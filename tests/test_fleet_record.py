"""Recording a fleet: SQLite and a real PostgreSQL, a real Mosquitto, exactly-once rows, shared subscriptions."""

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import REPO
from postgres import PostgresServer, postgres_bin

from edge_sdk.errors import ConfigError
from edge_sdk.fleet.query import parse_time, query
from edge_sdk.fleet.recorder import Recorder, RecorderConfig
from edge_sdk.fleet.store import open_store
from edge_sdk.runtime import messages


@pytest.fixture(scope="module")
def postgres_server():
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql; scripts/test.sh does)")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "poses.sqlite")
    server = request.getfixturevalue("postgres_server")
    return server.create_database("t{}".format(abs(hash(request.node.name)) % 10**9))


def pose(device, seq, ts, people=1, score=0.8, x=100.0):
    rng = np.random.default_rng(seq)
    kps = np.concatenate([rng.uniform(x, x + 50, (people, 17, 2)), rng.uniform(0.1, 1, (people, 17, 1))], axis=2)
    kps[:, 3] = 0  # a joint not found
    return messages.build_pose_message(device, seq, ts, 640, 480, "cam",
                                       messages.people_to_json(kps, [score + 0.1 * i for i in range(people)]),
                                       {"total": 12.5})


def publisher(broker):
    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def publish_all(client, payloads):
    infos = [client.publish(topic, payload, qos=1) for topic, payload in payloads]
    for info in infos:
        info.wait_for_publish(10)


def topic_of(msg):
    return "edge-sdk/{}/poses".format(msg["device"])


# ------------------------------------------------------------------------------------------------------------
def test_store_keeps_one_row_per_message_and_queries_numpy_arrays(store_url):
    now = time.time()
    old = [pose("cam-01", s, now - 3600 + s, people=2) for s in range(3)]
    recent = [pose("cam-01", s, now - 5 + s * 0.1, people=2, score=0.2) for s in range(5)]
    other = [pose("cam-02", s, now - 4 + s * 0.1, people=s % 2) for s in range(4)]
    restarted = [pose("cam-02", 0, now - 1)]  # seq restarts at 0 after a device restart: a new frame
    with open_store(store_url) as store:
        first = store.write(old + recent + other)
        again = store.write(recent + other + restarted)  # QoS 1 re-deliveries + one new frame
    assert (first.stored, first.duplicates) == (12, 0)
    assert (again.stored, again.duplicates) == (1, 9)

    rows = query(store_url)
    assert len(rows) == 3 * 2 + 5 * 2 + 2 + 1
    assert rows.keypoints.shape == (19, 17, 3) and rows.keypoints.dtype == np.float32
    mine = query(store_url, device="cam-01", since=now - 60)
    assert set(mine.device) == {"cam-01"} and len(mine) == 10
    expected = np.array([p["keypoints"] for m in recent for p in m["people"]], np.float32)
    np.testing.assert_allclose(mine.keypoints, expected, atol=1e-3)
    assert mine.seq.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4] and mine.person.tolist() == [0, 1] * 5
    assert np.all(np.diff(mine.ts) >= 0)
    confident = query(store_url, min_score=0.75)
    assert len(confident) > 0 and confident.score.min() >= 0.75 and "cam-01" in set(confident.device)
    assert len(query(store_url, device="cam-01", since="10m", until=now - 4.75)) == 2 * 3

    with open_store(store_url) as store:
        assert store.delete_older_than(now - 60) == 3
    assert len(query(store_url, device="cam-01")) == 10


def test_times_and_bad_store_inputs(tmp_path):
    assert parse_time("10m", now=1000.0) == 400.0
    assert parse_time("2026-01-31T14:00:00") == parse_time("2026-01-31T15:00:00+01:00")
    with pytest.raises(ConfigError, match="ISO 8601"):
        parse_time("yesterday")
    with pytest.raises(ConfigError, match="no such database"):
        query(str(tmp_path / "missing.sqlite"))
    (tmp_path / "junk.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match="not a usable SQLite"):
        open_store(str(tmp_path / "junk.sqlite"))


def start_recorder(config):
    recorder = Recorder(config)
    recorder.connect()
    stop = threading.Event()
    result = {}
    thread = threading.Thread(target=lambda: result.update(stats=recorder.run(stop)), daemon=True)
    thread.start()
    return recorder, stop, thread, result


def wait_rows(db, count, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open_store(db, create=False) as store:
            n = store.select("SELECT count(*) FROM frames WHERE ts > ?", [time.time() - 3600])[0][0]
        if n >= count:
            return n
        time.sleep(0.1)
    return n


def test_recorder_exactly_once_across_redelivery_bad_messages_and_a_restart(mosquitto, tmp_path):
    db = str(tmp_path / "poses.sqlite")
    with open_store(db) as store:  # recorded two days ago: past the retention of --keep 1d
        store.write([pose("cam-00", 0, time.time() - 2 * 86400, people=2)])
    config = RecorderConfig(mqtt_url=mosquitto.url, store_url=db, batch_seconds=0.05, keep_s=86400)
    recorder, stop, thread, result = start_recorder(config)
    client = publisher(mosquitto)
    now = time.time()
    good = [pose("cam-{:02d}".format(i % 3), i // 3, now + i * 0.01, people=i % 3) for i in range(60)]
    payloads = [(topic_of(m), messages.encode_json(m)) for m in good]
    payloads += payloads[10:20]  # re-deliveries
    payloads += [(topic_of(m), messages.encode_compact(m)) for m in good[:5]]  # same frames, other encoding
    nan = messages.encode_json(pose("cam-01", 999, now)).replace(b'"ts":', b'"ts":NaN,"x":', 1)
    bad = [("edge-sdk/cam-01/poses", b"\x00EPtruncated"), ("edge-sdk/cam-01/poses", b"{not json"),
           ("edge-sdk/cam-02/poses", messages.encode_json(pose("cam-01", 500, now))),  # names another device
           ("edge-sdk/cam-01/poses", nan)]
    publish_all(client, payloads[:40] + bad + payloads[40:])
    assert wait_rows(db, 60) == 60
    deadline = time.time() + 10
    while recorder.stats.received < len(payloads) + len(bad) and time.time() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    stats = result["stats"]
    assert (stats.stored, stats.duplicates, stats.bad, stats.deleted) == (60, 15, 4, 1)

    # recorder down: QoS 1 messages wait in its persistent session, then arrive once it is back
    later = [pose("cam-09", i, now + 10 + i * 0.01) for i in range(30)]
    publish_all(client, [(topic_of(m), messages.encode_json(m)) for m in later])
    recorder, stop, thread, result = start_recorder(config)
    publish_all(client, [(topic_of(m), messages.encode_json(m)) for m in later[:10]])  # and re-sent
    assert wait_rows(db, 90) == 90
    time.sleep(0.3)
    stop.set()
    thread.join(10)
    client.disconnect()
    assert result["stats"].stored == 30 and result["stats"].duplicates == 10
    with open_store(db, create=False) as store:
        assert store.select("SELECT count(*), count(DISTINCT device || ':' || seq || ':' || ts) FROM frames",
                            []) == [(90, 90)]
        assert store.select("SELECT sum(people) FROM frames", [])[0][0] == \
            store.select("SELECT count(*) FROM people", [])[0][0] == sum(len(m["people"]) for m in good + later)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_workers_split_a_shared_subscription(backend, mosquitto, tmp_path, request):
    db = str(tmp_path / "poses.sqlite") if backend == "sqlite" else \
        request.getfixturevalue("postgres_server").create_database("workers")
    stats_file = tmp_path / "stats.json"
    proc = subprocess.Popen([sys.executable, "-m", "edge_sdk", "record", "--mqtt", mosquitto.url, "--to", db,
                             "--workers", "2", "--idle-timeout", "1", "--batch-seconds", "0.05",
                             "--stats", str(stats_file)], cwd=str(REPO), stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any("recording" in line for line in lines):
            line = proc.stderr.readline()
            assert line, "recorder exited early:\n" + "".join(lines)
            lines.append(line)
        client = publisher(mosquitto)
        now = time.time()
        sent = [pose("cam-{:02d}".format(i % 8), i // 8, now + i * 0.001) for i in range(400)]
        publish_all(client, [(topic_of(m), messages.encode_json(m)) for m in sent])
        client.disconnect()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    stats = json.loads(stats_file.read_text())
    assert [s["worker"] for s in stats] == [0, 1]
    assert all(s["received"] > 0 for s in stats), stats  # the broker split the stream
    assert sum(s["stored"] for s in stats) == 400 and sum(s["duplicates"] for s in stats) == 0
    with open_store(db, create=False) as store:
        assert store.select("SELECT count(*), count(DISTINCT device || ':' || seq) FROM frames", []) == [(400, 400)]


def test_query_cli_csv_and_jsonl(tmp_path, edge_sdk_cli):
    db = str(tmp_path / "poses.sqlite")
    now = time.time()
    with open_store(db) as store:
        store.write([pose("cam-01", s, now - 30 + s, people=2) for s in range(3)] + [pose("cam-02", 0, now)])
    proc = edge_sdk_cli("query", db, "--device", "cam-01", "--since", "1m", "--format", "csv", check=True)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 + 6 and lines[0].startswith("device,ts,seq,person,score,nose_x,nose_y,nose_score")
    assert len(lines[1].split(",")) == 5 + 51 and lines[1].startswith("cam-01,")
    proc = edge_sdk_cli("query", db, "--min-score", "0.85", check=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rows and all(r["score"] >= 0.85 and len(r["keypoints"]) == 17 for r in rows)
    proc = edge_sdk_cli("query", db, "--since", "last tuesday")
    assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e999", '"12"', "null", "true", "[1]"])
def test_a_keypoint_that_is_not_a_finite_number_is_refused(value):
    from edge_sdk.runtime.message_check import MessageError, parse_pose_payload

    payload = messages.encode_json(pose("cam-01", 1, 1.0))
    assert parse_pose_payload(payload, topic_device="cam-01")["seq"] == 1
    first_x = json.loads(payload)["people"][0]["keypoints"][0][0]
    bad = payload.replace("[{},".format(first_x).encode(), "[{},".format(value).encode(), 1)
    assert bad != payload
    with pytest.raises(MessageError):
        parse_pose_payload(bad, topic_device="cam-01")


def test_lost_database_connection_is_retried_and_nothing_is_acknowledged_before_the_commit(postgres_server, caplog):
    import psycopg

    db = postgres_server.create_database("lost")
    recorder = Recorder(RecorderConfig(mqtt_url="mqtt://127.0.0.1:1", store_url=db))
    acked = []

    class Client:  # records acknowledgements; the database work is real
        def ack(self, mid, qos):
            acked.append(mid)

    recorder._client = Client()
    now = time.time()
    batch = [(topic_of(m), messages.encode_json(m), i + 1, 1) for i, m in enumerate(
        pose("cam-01", s, now + s) for s in range(5))]
    recorder.write_batch(batch[:2])
    assert acked == [1, 2]
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:  # the server drops our connection
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'lost'")
    recorder.write_batch(batch)  # first try fails, the retry reconnects
    assert acked == [1, 2, 1, 2, 3, 4, 5]
    assert "retrying" in caplog.text and "unacknowledged" in caplog.text
    assert (recorder.stats.stored, recorder.stats.duplicates) == (5, 2)
    recorder._client = None
    recorder.close()
    assert len(query(db)) == 5


def test_record_cli_errors_are_clear(tmp_path, edge_sdk_cli):
    from conftest import free_port

    db = str(tmp_path / "poses.sqlite")
    cases = [(["--mqtt", "mqtt://127.0.0.1:1", "--topic", "edge-sdk/#/poses"], "not valid MQTT"),
             (["--mqtt", "mqtt://127.0.0.1:{}".format(free_port())], "connection refused"),
             (["--mqtt", "mqtt://127.0.0.1:1", "--keep", "forever"], "duration"),
             (["--mqtt", "mqtt://127.0.0.1:1", "--workers", "0"], "--workers")]
    for args, expected in cases:
        proc = edge_sdk_cli("record", "--to", db, *args, timeout=60)
        assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_killed_recorder_loses_nothing_and_stores_nothing_twice(mosquitto, tmp_path):
    import signal

    db = str(tmp_path / "poses.sqlite")
    command = [sys.executable, "-m", "edge_sdk", "record", "--mqtt", mosquitto.url, "--to", db, "--client-id",
               "crash-test", "--batch-seconds", "0.1", "--idle-timeout", "1.5"]

    def start():
        proc = subprocess.Popen(command, cwd=str(REPO), stderr=subprocess.PIPE, text=True)
        line = proc.stderr.readline()
        assert "recording" in line, line + proc.stderr.read()
        return proc

    recorder = start()
    client = publisher(mosquitto)
    now = time.time()
    sent = [pose("cam-{:02d}".format(i % 4), i // 4, now + i * 0.001) for i in range(600)]
    infos = []
    for i, msg in enumerate(sent):
        infos.append(client.publish(topic_of(msg), messages.encode_json(msg), qos=1))
        if i == 300:
            wait_rows(db, 50)
            recorder.send_signal(signal.SIGKILL)  # mid-stream: batches received, some committed, not all acked
            recorder.wait(10)
        time.sleep(0.002)
    for info in infos:
        info.wait_for_publish(10)
    recorder = start()  # same client id: its session kept what was not acknowledged
    try:
        assert wait_rows(db, 600) == 600
        _, err = recorder.communicate(timeout=30)
    finally:
        if recorder.poll() is None:
            recorder.kill()
        client.disconnect()
    with open_store(db, create=False) as store:
        assert store.select("SELECT count(*), count(DISTINCT device || ':' || seq) FROM frames", []) == [(600, 600)]
    received = int(err.split("worker 0: ")[1].split(" received")[0])
    assert 0 < received < 600, err  # the restarted recorder got the rest, not everything again
