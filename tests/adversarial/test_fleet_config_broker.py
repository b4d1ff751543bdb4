"""Issue #13, items 13-15: the broker configuration `edge-sdk broker-config` writes, tried against a live
Mosquitto started exactly as docs/mqtt.md says (`mosquitto -c broker/mosquitto.conf`).

Output directories are made world-traversable (mkdtemp + 0755): started as root, Mosquitto drops to its own
user before it opens the password file, as it does on a real broker host.
"""

import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from edge_sdk.broker_config import write_broker_config
from edge_sdk.errors import ConfigError
from edge_sdk.runtime.mqtt import MqttPublisher, new_client
from tests.conftest import free_port, mosquitto_binary, stop_process, wait_for_port

# an id that closes its own ACL block and opens one for cam-01; the generated "/<id>/#" completes the topic
INJECTION = "x\nuser cam-01\ntopic readwrite edge-sdk"


@pytest.fixture
def broker_dir():
    """A broker output directory Mosquitto's own user can reach (pytest's tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="edge-sdk-fleet-broker-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def fleet_file(directory, text):
    path = Path(directory) / "fleet.toml"
    path.write_text(text)
    return path


def inventory(port, devices=("cam-01", "cam-02"), extra="", form="fleet"):
    """The fleet file `edge-sdk flash` reads, with the broker's tables (``form="deprecated"``: the older
    broker-config-only form, still read)."""
    if form == "deprecated":
        text = '[broker]\nport = {}\n{}'.format(port, extra)
        for name in devices:
            text += '\n[[devices]]\nid = "{}"\n'.format(name)
        return text + '\n[[subscribers]]\nname = "dashboard"\n'
    text = '[defaults]\nuser = "nvidia"\n[broker]\nport = {}\n{}'.format(port, extra)
    for i, name in enumerate(devices):
        text += '\n[devices.{}]\nhost = "10.0.0.{}"\n'.format(name, 21 + i)
    return text + '\n[subscribers.dashboard]\n'


class Broker:
    """`mosquitto -c DIR/mosquitto.conf`, as the docs say."""

    def __init__(self, conf, port):
        self.conf, self.port, self.proc = conf, port, None
        self.log = Path(conf).parent / "mosquitto.log"

    def start(self):
        binary = mosquitto_binary()
        if binary is None:
            pytest.fail("mosquitto is not installed: run scripts/test.sh (installs it with apt-get)")
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)
        if not wait_for_port("127.0.0.1", self.port):
            self.stop()
            pytest.fail("`mosquitto -c {}` did not start:\n{}".format(self.conf, self.log.read_text()))
        return self

    def stop(self):
        self.proc = stop_process(self.proc)  # SIGTERM: Mosquitto writes its persistence file on the way out


def password(result, name):
    return result.credentials[name].read_text().strip()


def connect_raw(port, username, secret, client_id, clean_session=True, on_message=None):
    """A paho client with exactly this client id (what an attacker would send)."""
    client = new_client(client_id, clean_session=clean_session)
    client.username_pw_set(username, secret)
    connected = threading.Event()
    client.on_connect = lambda c, u, flags, rc, *rest: connected.set()
    if on_message:
        client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    assert connected.wait(5), "{} could not connect".format(username)
    return client


# ------------------------------------------------------------------------------------------------- item 13


@pytest.mark.parametrize("form, text", [
    ("inventory key", '[devices."{}"]\nhost = "10.0.0.21"\n'.format(INJECTION.replace("\n", "\\n"))),
    ("inventory device_id", '[devices.cam-01]\nhost = "h"\ndevice_id = "{}"\n'.format(INJECTION.replace("\n", "\\n"))),
    ("deprecated id", '[[devices]]\nid = "{}"\n'.format(INJECTION.replace("\n", "\\n"))),
    ("subscriber topics",
     '[devices.cam-01]\nhost = "h"\n[subscribers.dash]\ntopics = ["edge-sdk/#\\ntopic write #"]\n'),
    ("subscriber name", '[devices.cam-01]\nhost = "h"\n[subscribers."dash\\nuser cam-01"]\n'),
    ("prefix", '[defaults]\nmqtt_prefix = "edge-sdk/#\\ntopic readwrite #"\n[devices.cam-01]\nhost = "h"\n'),
    ("deprecated password", '[[devices]]\nid = "cam-01"\npassword = "x\\ncam-02:$7$forged"\n'),
])
def test_a_newline_cannot_add_acl_or_passwd_lines(tmp_path, broker_dir, form, text):
    with pytest.raises(ConfigError, match="not usable|control character|not a valid") as err:
        write_broker_config(fleet_file(tmp_path, text), broker_dir / "out")
    assert not (broker_dir / "out").exists()  # refused before anything was written
    if "password" in form:
        assert "forged" not in str(err.value)  # a password is never echoed


def test_an_injected_id_gives_cam01_no_rights_on_a_live_broker(tmp_path, broker_dir):
    """A fleet with cam-01, cam-02 and the injected id: refused. Were it ever written again, the live broker
    shows what the injection buys: cam-01 publishing as cam-02."""
    port = free_port()
    fleet = fleet_file(tmp_path, inventory(port, devices=("cam-01", "cam-02", INJECTION.replace("\n", "\\n")),
                                           form="deprecated", extra='bind = "127.0.0.1"\n'))
    try:  # hashed in Python: mosquitto_passwd, where installed, happens to choke on the injected line
        result = write_broker_config(fleet, broker_dir, use_mosquitto_passwd=False)
    except ConfigError as exc:
        assert "not usable" in str(exc)
        assert not (broker_dir / "acl").exists()
        return
    for f in (result.password_file, result.acl_file):  # (so that any broker can read them)
        f.chmod(0o644)
    assert publishes_of_cam01(result, port) == ["edge-sdk/cam-01/poses"]


def test_cam01_gets_only_its_own_topics_on_a_live_broker(tmp_path, broker_dir):
    """The ACL the generated config loads: cam-01 can write its own topics and nothing else."""
    port = free_port()
    result = write_broker_config(fleet_file(tmp_path, inventory(port)), broker_dir)
    assert publishes_of_cam01(result, port) == ["edge-sdk/cam-01/poses"]


def publishes_of_cam01(result, port):
    """cam-01 publishes to cam-02's topic, then to its own: the topics a dashboard receives."""
    broker = Broker(result.conf, port).start()
    got = []
    try:
        dash = connect_raw(port, "dashboard", password(result, "dashboard"), "dashboard",
                           on_message=lambda c, u, m: got.append(m.topic))
        dash.subscribe("edge-sdk/#", qos=1)
        time.sleep(0.3)
        cam = connect_raw(port, "cam-01", password(result, "cam-01"), "cam-01")
        for topic in ("edge-sdk/cam-02/poses", "edge-sdk/cam-01/poses"):
            cam.publish(topic, b"{}", qos=1).wait_for_publish(5)
        deadline = time.time() + 3
        while time.time() < deadline and "edge-sdk/cam-01/poses" not in got:
            time.sleep(0.05)
        for client in (cam, dash):
            client.loop_stop()
            client.disconnect()
    finally:
        broker.stop()
    return got


# ------------------------------------------------------------------------------------------------- item 14


@pytest.mark.parametrize("form", ["fleet", "deprecated"])
def test_cam01_cannot_kick_cam02_off_the_broker(tmp_path, broker_dir, form):
    """cam-01 connects with cam-02's client id: the broker renames it to 'cam-01' (use_username_as_clientid),
    so cam-02 stays connected and its last will ('offline') never fires."""
    port = free_port()
    result = write_broker_config(fleet_file(tmp_path, inventory(port, form=form)), broker_dir)
    assert "use_username_as_clientid true" in result.conf.read_text()
    broker = Broker(result.conf, port).start()
    states = []
    try:
        dash = connect_raw(port, "dashboard", password(result, "dashboard"), "dashboard",
                           on_message=lambda c, u, m: states.append(json.loads(m.payload)["state"]))
        dash.subscribe("edge-sdk/cam-02/status", qos=1)
        cam2 = MqttPublisher("mqtt://127.0.0.1:{}".format(port), "cam-02", password=password(result, "cam-02"),
                             client_id="edge-sdk-cam-02", reconnect_min=0.1, reconnect_max=0.2).connect(5)
        attacker = connect_raw(port, "cam-01", password(result, "cam-01"), "edge-sdk-cam-02")
        time.sleep(1.0)
        still_connected = cam2._client.is_connected()
        attacker.loop_stop()
        attacker.disconnect()
        cam2.close(timeout=2)
        time.sleep(0.3)
        dash.loop_stop()
        dash.disconnect()
    finally:
        broker.stop()
    assert still_connected
    assert states == ["online", "offline"]  # online once, offline only at its own close: never kicked


# ------------------------------------------------------------------------------------------------- item 15


@pytest.mark.parametrize("form", ["fleet", "deprecated"])
def test_the_documented_mosquitto_command_starts_and_keeps_sessions(tmp_path, broker_dir, form):
    """`mosquitto -c out/mosquitto.conf` (as root it drops to the mosquitto user) reads the password file, and
    a persistent subscriber session gets the QoS 1 messages published while it was away, across a broker
    restart, from the persistence file inside the output directory."""
    port = free_port()
    result = write_broker_config(fleet_file(tmp_path, inventory(port, form=form)), broker_dir)
    assert result.password_file.stat().st_mode & 0o007 == 0  # never world-readable
    conf = result.conf.read_text()
    assert "persistence true" in conf and "persistence_location {}/".format(broker_dir / "persistence") in conf
    broker = Broker(result.conf, port).start()
    got = []
    try:
        dash = connect_raw(port, "dashboard", password(result, "dashboard"), "any-id", clean_session=False)
        dash.subscribe("edge-sdk/#", qos=1)
        time.sleep(0.3)
        dash.loop_stop()
        dash.disconnect()
        cam = connect_raw(port, "cam-01", password(result, "cam-01"), "cam-01")
        for seq in range(5):
            cam.publish("edge-sdk/cam-01/poses", json.dumps({"seq": seq}), qos=1).wait_for_publish(5)
        cam.loop_stop()
        cam.disconnect()
        broker.stop()
        assert (broker_dir / "persistence" / "mosquitto.db").is_file()
        broker.start()
        dash = connect_raw(port, "dashboard", password(result, "dashboard"), "another-id", clean_session=False,
                           on_message=lambda c, u, m: got.append(json.loads(m.payload)["seq"]))
        deadline = time.time() + 5
        while time.time() < deadline and len(got) < 5:
            time.sleep(0.05)
        dash.loop_stop()
        dash.disconnect()
    finally:
        broker.stop()
    assert got == [0, 1, 2, 3, 4]
    assert "Unable to open pwfile" not in (broker_dir / "mosquitto.log").read_text()


def test_no_clear_text_password_listener_on_the_network(tmp_path, broker_dir, edge_sdk_cli):
    fleet = fleet_file(tmp_path, inventory(1883, extra='bind = "0.0.0.0"\n'))
    with pytest.raises(ConfigError, match="without TLS.*--insecure"):
        write_broker_config(fleet, broker_dir / "refused")
    assert not (broker_dir / "refused").exists()
    proc = edge_sdk_cli("broker-config", "--devices", fleet, "-o", broker_dir / "refused")
    assert proc.returncode == 2 and "clear text" in proc.stderr and "Traceback" not in proc.stderr
    result = write_broker_config(fleet, broker_dir / "insecure", insecure=True)
    assert any(w.startswith("INSECURE") for w in result.warnings)
    assert "listener 1883 0.0.0.0" in result.conf.read_text()
    # without a bind and without TLS: localhost only, loudly (the CLI prints each warning as WARNING: ...)
    proc = edge_sdk_cli("broker-config", "--devices", fleet_file(tmp_path, inventory(1883)), "-o",
                        broker_dir / "local")
    assert proc.returncode == 0 and "WARNING: NO TLS" in proc.stderr, proc.stderr
    assert "listener 1883 127.0.0.1" in (broker_dir / "local" / "mosquitto.conf").read_text()


def test_one_fleet_file_serves_flash_and_broker_config(tmp_path, broker_dir):
    from edge_sdk.deploy.inventory import load_inventory

    fleet = fleet_file(tmp_path, inventory(1883, devices=("cam-01", "cam-02")).replace(
        '[devices.cam-02]\nhost = "10.0.0.22"\n', '[devices.cam-02]\nhost = "10.0.0.22"\ndevice_id = "lobby-2"\n'))
    assert [(d.name, d.host, d.mqtt_id) for d in load_inventory(fleet)] == [
        ("cam-01", "10.0.0.21", "cam-01"), ("cam-02", "10.0.0.22", "lobby-2")]
    result = write_broker_config(fleet, broker_dir)
    acl = result.acl_file.read_text()
    assert "user cam-01\ntopic write edge-sdk/cam-01/#" in acl and "user lobby-2\ntopic write edge-sdk/lobby-2/#" in acl
    assert "user dashboard\ntopic read edge-sdk/#" in acl
    assert not result.warnings[1:] and "NO TLS" in result.warnings[0]
    old = fleet_file(tmp_path, '[broker]\nport = 1883\n[[devices]]\nid = "cam-01"\n[[subscribers]]\nname = "dash"\n')
    result = write_broker_config(old, broker_dir / "old")
    assert any("deprecated [[devices]] form" in w for w in result.warnings)
    assert "user cam-01\ntopic write edge-sdk/cam-01/#" in result.acl_file.read_text()
