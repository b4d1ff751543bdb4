"""`edge-sdk flash` against real OpenSSH servers: one sshd per test device, each device's filesystem a temp dir."""

import dataclasses
import io
import json
import os
import sys
import tarfile
import time
from pathlib import Path

import pytest

from edge_sdk.deploy import fleet
from edge_sdk.deploy.inventory import load_inventory
from edge_sdk.deploy.progress import Reporter
from edge_sdk.deploy.release import build_runtime_wheel, prepare_release
from edge_sdk.deploy.ssh import SshOptions
from tests.sshd import NANO_MODEL, SSHD, CuttableLink, FakeDevice, free_port, keygen

pytestmark = pytest.mark.skipif(not os.path.exists(SSHD), reason="openssh-server is not installed")

FAKE_RUNTIME = Path(__file__).parent / "fake_runtime.py"


def runtime_command(mode="healthy"):
    return "{{python}} {} --health-file {{health_file}} --bundle {{bundle}} --mode {} {{run_args}}".format(
        FAKE_RUNTIME, mode)


def make_bundle(where, target="jetson-tx2", payload=b"model-v1", big=0):
    """A bundle written by the build step's own writer (edge_sdk.bundle_writer), around a tiny stand-in model file."""
    from edge_sdk.targets import get_target, load_targets

    from edge_sdk.bundle_writer import Precision, write_bundle
    from edge_sdk.runtime.model_meta import ModelMeta

    where = Path(where)
    where.parent.mkdir(parents=True, exist_ok=True)
    model = where.parent / (where.name + ".onnx")
    model.write_bytes(payload)
    if target in load_targets():
        profile = get_target(target)
    else:  # a board no profile describes (a custom carrier, a typo'd toml): no detection hints
        profile = get_target("jetson-tx2")
        no_hints = {f.name: () for f in dataclasses.fields(profile) if f.name.startswith("detect_")}
        profile = dataclasses.replace(profile, name=target, **no_hints)
    extra = {}
    if big:
        (where.parent / "calib.cache").write_bytes(os.urandom(big))
        extra["calib.cache"] = where.parent / "calib.cache"
    return write_bundle(where, model_path=model, meta=ModelMeta(), target=profile,
                        precision=Precision("fp16", "fp16"), engine={"status": "build-on-device"},
                        extra_files=extra).directory


@pytest.fixture(scope="session")
def runtime_wheel(tmp_path_factory):
    return build_runtime_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """Start fake devices on demand: ``lab.add("dev1")``; everything is stopped after the test."""
    monkeypatch.setenv("EDGE_SDK_STATE_DIR", str(tmp_path / "state"))  # `last seen` memory of this test

    class Lab:
        def __init__(self):
            self.client_key = keygen(tmp_path / "id_test")
            self.known_hosts = tmp_path / "known_hosts"
            self.known_hosts.write_text("")
            self.devices = []
            self.links = []

        def add(self, name, trusted=True, **kwargs):
            device = FakeDevice(tmp_path / "devices", name, "127.0.0.{}".format(2 + len(self.devices)),
                                self.client_key.with_suffix(".pub"), **kwargs).start()
            self.devices.append(device)
            if trusted:
                with open(self.known_hosts, "a") as f:
                    f.write(device.host_pubkey_line + "\n")
            return device

        def link(self, device):
            link = CuttableLink(device.host, device.host, device.port)
            self.links.append(link)
            with open(self.known_hosts, "a") as f:
                f.write(device.host_pubkey_line.replace(":{}]".format(device.port), ":{}]".format(link.port))
                        .replace("]:{}".format(device.port), "]:{}".format(link.port)) + "\n")
            return link

        def inventory(self, mode="healthy", ports=None, extra="", modes=None, unreachable=(), health_timeout=10,
                      deps="skip", service="process", run_args=None, allow_unsigned=True):
            lines = ['[defaults]', 'user = "root"', 'identity = "{}"'.format(self.client_key),
                     'python = "{}"'.format(sys.executable), 'service = "{}"'.format(service),
                     'deps = "{}"'.format(deps),
                     # run_args given: the default service command, i.e. the real `edge-sdk run`
                     "service_command = '{}'".format(runtime_command(mode)) if run_args is None else
                     "run_args = '{}'".format(run_args),
                     "health_timeout = {}".format(health_timeout),
                     "allow_unsigned = {}".format("true" if allow_unsigned else "false"), extra, ""]
            for device in self.devices:
                port = (ports or {}).get(device.name, device.port)
                lines += ["[devices.{}]".format(device.name), 'host = "{}"'.format(device.host),
                          "port = {}".format(port), 'root = "{}"'.format(device.root),
                          'sysroot = "{}"'.format(device.sysroot), 'device_id = "{}"'.format(device.name)]
                if device.name in (modes or {}):
                    lines.append("service_command = '{}'".format(runtime_command(modes[device.name])))
                lines.append("")
            for name in unreachable:  # an address where nothing listens
                lines += ["[devices.{}]".format(name), 'host = "127.0.0.99"', "port = {}".format(
                    free_port("127.0.0.99")), ""]
            path = tmp_path / "fleet.toml"
            path.write_text("\n".join(lines))
            return path

        def options(self, **kwargs):
            return fleet.FlashOptions(ssh=SshOptions(known_hosts=str(self.known_hosts), connect_timeout=5),
                                      **kwargs)

    lab = Lab()
    yield lab
    for link in lab.links:
        link.close()
    for device in lab.devices:
        device.stop_runtime()
        device.stop()


class StageLog(Reporter):
    def __init__(self):
        self.stages = []

    def stage(self, device, stage, message=""):
        self.stages.append((device, stage, message))

    def seen(self, device, stage, text=""):
        return any(d == device and s == stage and text in m for d, s, m in self.stages)


def release_of(tmp_path, wheel, name="v1", **bundle_kwargs):
    bundle = make_bundle(tmp_path / "bundles" / name, payload=name.encode(), **bundle_kwargs)
    return prepare_release(bundle, tmp_path / "work" / name, runtime_wheel=wheel)


def test_flash_one_device_installs_switches_and_keeps_the_previous_version(lab, tmp_path, runtime_wheel):
    device = lab.add("cam1")
    devices = load_inventory(lab.inventory(deps="install"))
    v1 = release_of(tmp_path, runtime_wheel, "v1")
    stages = StageLog()
    [result] = fleet.flash(devices, v1, lab.options(), stages)
    assert result.status == "updated", result
    assert stages.seen("cam1", "deps", "all present")  # numpy, cv2, paho-mqtt found: nothing installed
    assert stages.seen("cam1", "verify") and stages.seen("cam1", "health")
    assert (result.old_version, result.new_version) == (None, v1.version)
    assert device.current_version() == v1.version
    health = json.loads((device.root / "run" / "health.json").read_text())
    # the service runs the runtime installed for this version, on the unpacked, verified bundle
    assert health["runtime"].startswith(str(device.root / "versions" / v1.version / "site"))
    assert health["bundle"] == str(device.root / "versions" / v1.version / "bundle")
    assert (device.root / "versions" / v1.version / "bundle" / "model.onnx").read_bytes() == b"v1"
    assert stages.seen("cam1", "engine", "builds it on the device at first start")
    first_pid = device.runtime_pid()

    v2 = release_of(tmp_path, runtime_wheel, "v2")
    assert v2.version != v1.version
    [result] = fleet.flash(devices, v2, lab.options())
    assert result.status == "updated", result
    assert (result.old_version, result.new_version) == (v1.version, v2.version)
    assert device.current_version() == v2.version
    assert device.runtime_alive() and device.runtime_pid() != first_pid
    assert sorted(os.listdir(device.root / "versions")) == sorted([v1.version, v2.version])
    assert not list((device.root / "incoming").iterdir())  # uploads cleaned after success

    [again] = fleet.flash(devices, v2, lab.options())
    assert again.status == "unchanged"

    [row] = fleet.status(devices, lab.options())
    assert row.reachable and row.version == v2.version and row.running
    assert row.target == "jetson-tx2" and row.health.startswith("running")

    [back] = fleet.rollback(devices, lab.options())
    assert back.ok and (back.old_version, back.new_version) == (v2.version, v1.version)
    assert device.current_version() == v1.version and device.runtime_alive()

    devices[0].keep = 1  # keep only what runs
    v3 = release_of(tmp_path, runtime_wheel, "v3")
    assert fleet.flash(devices, v3, lab.options())[0].status == "updated"
    assert os.listdir(device.root / "versions") == [v3.version]


def flash_cli(edge_sdk_cli, lab, bundle, wheel, *args):
    return edge_sdk_cli("flash", bundle, "--runtime-wheel", wheel, "--known-hosts", lab.known_hosts,
                        "--connect-timeout", "3", *args, timeout=120)


def table_rows(stdout):
    return {line.split()[0]: line for line in stdout.splitlines() if line.strip()}


def test_cli_flashes_a_fleet_reports_an_unreachable_device_and_shows_status(lab, tmp_path, runtime_wheel,
                                                                            edge_sdk_cli, mosquitto):
    cams = [lab.add(name) for name in ("cam1", "cam2", "cam3")]
    inventory = lab.inventory(unreachable=["ghost"], extra='[groups.lobby]\ndevices = ["cam1", "cam2"]')
    v1 = make_bundle(tmp_path / "b1", payload=b"v1")
    v1 = v1.parent / (v1.name + ".tar.gz")  # the archive the build step writes next to the directory
    proc = flash_cli(edge_sdk_cli, lab, v1, runtime_wheel, "--inventory", inventory, "--parallel", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one device failed -> non-zero exit
    rows = table_rows(proc.stdout)
    version = cams[0].current_version()
    assert version and all(c.current_version() == version for c in cams)
    for name in ("cam1", "cam2", "cam3"):
        assert "(none) -> {}".format(version) in rows[name] and " updated " in rows[name], proc.stdout
        assert "[{}".format(name) in proc.stderr and "upload 100%" in proc.stderr  # progress per device
    assert " unreachable " in rows["ghost"] and "connection refused" in rows["ghost"]
    assert "3 ok, 1 failed" in proc.stdout

    # the group only: cam3 keeps v1
    v2 = make_bundle(tmp_path / "b2", payload=b"v2")
    proc = flash_cli(edge_sdk_cli, lab, v2, runtime_wheel, "--inventory", inventory, "--group", "lobby")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    new = cams[0].current_version()
    assert new != version and cams[1].current_version() == new and cams[2].current_version() == version
    assert "{} -> {}".format(version, new) in table_rows(proc.stdout)["cam1"]

    # status over SSH (+ the retained MQTT status the runtime publishes)
    import paho.mqtt.publish as publish

    publish.single("edge-sdk/cam1/status", json.dumps({"status": "online"}), retain=True,
                   hostname=mosquitto.host, port=mosquitto.port)
    proc = edge_sdk_cli("devices", "status", "--inventory", inventory, "--known-hosts", lab.known_hosts,
                        "--connect-timeout", "3", "--mqtt", mosquitto.url)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # ghost is unreachable
    rows = table_rows(proc.stdout)
    assert new in rows["cam1"] and "running" in rows["cam1"] and "jetson-tx2/fp16" in rows["cam1"]
    assert "online" in rows["cam1"]
    assert version in rows["cam3"] and "unreachable" in rows["ghost"]

    # rollback of one device named on the command line (no inventory)
    cam1 = cams[0]
    proc = edge_sdk_cli("rollback", "--device", "root@{}:{}".format(cam1.host, cam1.port), "--identity",
                        lab.client_key, "--root", cam1.root, "--sysroot", cam1.sysroot, "--python", sys.executable,
                        "--known-hosts", lab.known_hosts)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert cams[0].current_version() == version and cams[1].current_version() == new
    assert "{} -> {}".format(new, version) in table_rows(proc.stdout)["{}:{}".format(cam1.host, cam1.port)]

    cams[2].stop()  # cam3 drops off the network: status remembers when it was last reached and what it ran
    rows = fleet.status(load_inventory(inventory, names=["cam3"]), lab.options())
    line = fleet.format_status(rows)
    assert "unreachable" in line and " ago (ran {})".format(version) in line, line


class CutDuringUpload(Reporter):
    """Pulls the cable of one device once more than half of its upload went through."""

    def __init__(self, device, link):
        self.device, self.link, self.cut_at = device, link, None

    def transfer(self, device, done, total):
        if device == self.device and self.cut_at is None and total // 2 < done < total:
            self.link.cut()
            self.cut_at = (done, total)


class ConcurrencyProbe(Reporter):
    def __init__(self):
        self.active, self.most = set(), 0

    def stage(self, device, stage, message=""):
        self.active.add(device)
        self.most = max(self.most, len(self.active))

    def finish(self, result):
        self.active.discard(result.device)


class CutAtStage(Reporter):
    def __init__(self, device, stage, link):
        self.device, self.stage_name, self.link = device, stage, link

    def stage(self, device, stage, message=""):
        if device == self.device and stage == self.stage_name:
            self.link.cut()


def test_connection_cut_mid_upload_leaves_that_device_on_the_old_version(lab, tmp_path, runtime_wheel):
    cams = [lab.add(name) for name in ("cam1", "cam2", "cam3")]
    link = lab.link(cams[1])
    devices = load_inventory(lab.inventory(ports={"cam2": link.port}))
    v1 = release_of(tmp_path, runtime_wheel, "v1")
    bound = ConcurrencyProbe()
    assert all(r.status == "updated" for r in fleet.flash(devices, v1, lab.options(parallel=2), bound))
    assert bound.most == 2  # --parallel 2: two devices at a time, never three
    old_pid = cams[1].runtime_pid()

    v2 = release_of(tmp_path, runtime_wheel, "v2", big=2 << 20)
    cutter = CutDuringUpload("cam2", link)
    results = {r.device: r for r in fleet.flash(devices, v2, lab.options(retry_backoff=0.05), cutter)}
    assert cutter.cut_at is not None
    assert results["cam1"].status == results["cam3"].status == "updated"
    assert cams[0].current_version() == cams[2].current_version() == v2.version
    cut = results["cam2"]
    assert cut.status == "failed" and "connection lost" in cut.message and "gave up after 3 retries" in cut.message
    assert cams[1].current_version() == v1.version
    assert cams[1].runtime_pid() == old_pid and cams[1].runtime_alive()  # untouched, still running

    link.restore()  # the next attempt resumes the partial upload and succeeds
    cam2 = [d for d in devices if d.name == "cam2"]
    stages = StageLog()
    [again] = fleet.flash(cam2, v2, lab.options(), stages)
    assert again.status == "updated", again
    resumed = [m for d, s, m in stages.stages if m.startswith("resuming ")]
    assert resumed, stages.stages  # the file cut mid-way continues where it stopped
    assert cams[1].current_version() == v2.version
    assert not list((cams[1].root / "incoming").iterdir())

    # the connection drops while the device installs: the agent finishes alone (health check included)
    link.restore()
    v3 = release_of(tmp_path, runtime_wheel, "v3")
    [lost] = fleet.flash(cam2, v3, lab.options(), CutAtStage("cam2", "health", link))
    assert lost.status == "failed" and "goes on alone" in lost.message, lost
    deadline = time.time() + 30
    while time.time() < deadline and v3.version not in json.loads(
            (cams[1].root / "history.json").read_text())["versions"]:
        time.sleep(0.2)
    assert cams[1].current_version() == v3.version and cams[1].runtime_alive()


def rewrite_tar(tar_path, rel, data):
    """Damage one file inside a bundle tarball (same size, other bytes), keeping its manifest."""
    members = {}
    with tarfile.open(tar_path) as tf:
        for m in tf.getmembers():
            members[m.name] = (m, tf.extractfile(m).read() if m.isfile() else None)
    with tarfile.open(tar_path, "w:gz") as tf:
        for name, (m, content) in members.items():
            if name == rel:
                assert len(data) == len(content)
                content = data
            tf.addfile(m, io.BytesIO(content) if content is not None else None)


def test_corrupt_bundle_is_refused_before_switching(lab, tmp_path, runtime_wheel, edge_sdk_cli):
    device = lab.add("cam1")
    inventory = lab.inventory()
    devices = load_inventory(inventory)
    v1 = release_of(tmp_path, runtime_wheel, "v1")
    assert fleet.flash(devices, v1, lab.options())[0].status == "updated"
    pid = device.runtime_pid()

    # on the host: a tampered bundle is refused before any device is touched
    bad = make_bundle(tmp_path / "bad", payload=b"v2")
    (bad / "model.onnx").write_bytes(b"v3")  # same size, other bytes
    proc = flash_cli(edge_sdk_cli, lab, bad, runtime_wheel, "--inventory", inventory)
    assert proc.returncode == 2 and "model.onnx: sha256 mismatch" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr

    # on the device: damaged after the host checked it (disk, transfer) -> refused there, nothing switched
    v2 = release_of(tmp_path, runtime_wheel, "v2")
    rewrite_tar(v2.bundle_tar, "model.onnx", b"XX")
    [result] = fleet.flash(devices, v2, lab.options())
    assert result.status == "refused", result
    assert "model.onnx: sha256 mismatch" in result.message and "nothing was switched" in result.message
    assert device.current_version() == v1.version and device.runtime_pid() == pid and device.runtime_alive()
    assert not (device.root / "versions" / v2.version).exists()


def test_runtime_that_never_becomes_healthy_is_rolled_back(lab, tmp_path, runtime_wheel):
    silent, crashing = lab.add("silent"), lab.add("crashing")
    v1 = release_of(tmp_path, runtime_wheel, "v1")
    assert all(r.ok for r in fleet.flash(load_inventory(lab.inventory()), v1, lab.options()))

    devices = load_inventory(lab.inventory(modes={"silent": "silent", "crashing": "crash"}, health_timeout=2))
    v2 = release_of(tmp_path, runtime_wheel, "v2")
    results = {r.device: r for r in fleet.flash(devices, v2, lab.options())}
    assert results["silent"].status == "rolled-back" and "no health signal within 2s" in results["silent"].message
    assert results["crashing"].status == "rolled-back" and "exited with code 3" in results["crashing"].message
    assert "fake runtime: crashing on purpose" in results["crashing"].message  # the log tail says why
    for device in (silent, crashing):
        assert device.current_version() == v1.version and device.runtime_alive()
        health = json.loads((device.root / "run" / "health.json").read_text())
        assert "/versions/{}/site/".format(v1.version) in health["runtime"]  # the old version runs again
    [row] = fleet.status([d for d in devices if d.name == "silent"], lab.options())
    assert row.version == v1.version and row.running


def test_wrong_target_is_refused_before_upload(lab, tmp_path, runtime_wheel):
    nano = lab.add("nano1", model=NANO_MODEL)
    devices = load_inventory(lab.inventory())
    tx2 = release_of(tmp_path, runtime_wheel, "tx2", target="jetson-tx2")
    [result] = fleet.flash(devices, tx2, lab.options())
    assert result.status == "refused", result
    assert "'jetson-tx2'" in result.message and NANO_MODEL in result.message
    assert nano.current_version() is None and not (nano.root / "incoming").exists()

    unknown = release_of(tmp_path, runtime_wheel, "mystery", target="jetson-tx9")
    [result] = fleet.flash(devices, unknown, lab.options())
    assert result.status == "refused" and "--skip-target-check" in result.message
    assert nano.current_version() is None  # (a bundle for the Nano is accepted: test_target_check)


def test_host_keys_are_checked(lab, tmp_path, runtime_wheel):
    device = lab.add("cam1", trusted=False)
    devices = load_inventory(lab.inventory())
    [row] = fleet.status(devices, lab.options())
    assert not row.reachable and "is unknown" in row.error and "--trust-on-first-use" in row.error

    tofu = fleet.FlashOptions(ssh=SshOptions(known_hosts=str(lab.known_hosts), trust_on_first_use=True))
    [row] = fleet.status(devices, tofu)
    assert row.reachable, row.error
    recorded = lab.known_hosts.read_text()
    assert device.host_pubkey_line.split(" ", 1)[1] in recorded  # the key was recorded on first use

    # the device now presents another key: refused, even with trust-on-first-use, and nothing is touched
    impostor = keygen(tmp_path / "impostor").with_suffix(".pub").read_text().split()[:2]
    lab.known_hosts.write_text("[{}]:{} {} {}\n".format(device.host, device.port, *impostor))
    v1 = release_of(tmp_path, runtime_wheel, "v1")
    [result] = fleet.flash(devices, v1, tofu)
    assert result.status == "refused" and result.kind == "host-key"
    assert "HOST KEY MISMATCH" in result.message and "ssh-keygen -R" in result.message
    assert device.current_version() is None

    # and a key the device does not accept: a clear auth error (never a password prompt)
    lab.known_hosts.write_text(device.host_pubkey_line + "\n")
    stranger = keygen(tmp_path / "stranger")
    devices[0].identity = str(stranger)
    [row] = fleet.status(devices, lab.options())
    assert not row.reachable and "refused our SSH key" in row.error and "ssh-copy-id" in row.error


def test_systemd_unit_is_generated_enabled_and_restarted(lab, tmp_path, runtime_wheel):
    device = lab.add("cam1")
    systemctl = device.fake_systemctl()
    devices = load_inventory(lab.inventory(service="systemd", extra='systemctl = "{}"\nservice_name = "pose"\n'
                                                  'run_args = "--source /dev/video0 --mqtt mqtt://broker:1883"'
                                           .format(systemctl)))
    v1 = release_of(tmp_path, runtime_wheel, "v1")
    [result] = fleet.flash(devices, v1, lab.options())
    assert result.status == "updated", result
    calls = device.systemctl_calls
    assert calls[:3] == [["daemon-reload"], ["enable", "pose"], ["restart", "pose"]], calls
    unit = (device.sysroot / "etc/systemd/system/pose.service").read_text()
    assert "Restart=on-failure" in unit and "WantedBy=multi-user.target" in unit
    assert "/versions/{}/site".format(v1.version) in unit
    health = json.loads((device.root / "run" / "health.json").read_text())
    assert "/versions/{}/site/".format(v1.version) in health["runtime"]
    assert health["args"] == ["--source", "/dev/video0", "--mqtt", "mqtt://broker:1883"]

    v2 = release_of(tmp_path, runtime_wheel, "v2")
    assert fleet.flash(devices, v2, lab.options())[0].status == "updated"
    later = device.systemctl_calls[len(calls):]
    assert ["stop", "pose"] in later and later.index(["stop", "pose"]) < later.index(["restart", "pose"])
    assert "/versions/{}/site".format(v2.version) in (device.sysroot / "etc/systemd/system/pose.service").read_text()


def test_flash_starts_the_real_runtime_from_the_installed_wheel(lab, tmp_path, runtime_wheel, mosquitto):
    """No stand-in: the default service command runs `python -m edge_sdk run` from versions/<v>/site on a cpu
    bundle (oracle ONNX model, ONNX Runtime); its health file is what the flash waits for, and its retained
    MQTT status is what `devices status --mqtt` shows."""
    from edge_sdk.targets import get_target

    from edge_sdk.bundle_writer import Precision, write_bundle
    from edge_sdk.deploy.mqtt_status import read_retained_status
    from edge_sdk.testing.oracle_model import make_oracle

    device = lab.add("edge1")
    case = make_oracle(tmp_path / "oracle", num_frames=4, video=None)
    bundle = write_bundle(tmp_path / "cpu-bundle", model_path=case.model_path, meta=case.meta,
                          target=get_target("cpu"), precision=Precision("fp32", "fp32"),
                          engine={"status": "none"}).directory
    run_args = "--source synthetic:live?w=320&h=240&fps=5&frames=100000 --mqtt {}".format(mosquitto.url)
    devices = load_inventory(lab.inventory(run_args=run_args, health_timeout=90, deps="check",
                                           extra='health_mqtt = "{}"'.format(mosquitto.url)))
    release = prepare_release(bundle, tmp_path / "work", runtime_wheel=runtime_wheel)
    [result] = fleet.flash(devices, release, lab.options())
    assert result.status == "updated", result
    assert "MQTT online on edge-sdk/edge1/status" in result.message  # both health signals came
    health = json.loads((device.root / "run" / "health.json").read_text())
    assert health["status"] == "running" and health["frames"] >= 1 and health["pid"] == device.runtime_pid()
    environ = Path("/proc/{}/environ".format(health["pid"])).read_bytes().split(b"\0")
    pythonpath = [e for e in environ if e.startswith(b"PYTHONPATH=")][0].decode()
    assert pythonpath.startswith("PYTHONPATH={}".format(device.root / "versions" / release.version / "site"))
    [row] = fleet.status(devices, lab.options())
    assert row.running and row.target == "cpu" and row.precision == "fp32" and "frames" in row.health
    status = read_retained_status(mosquitto.url, "edge-sdk", ["edge1"], wait=10)
    assert status["edge1"].startswith("online"), status
