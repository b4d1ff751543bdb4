"""`edge-sdk flash` against real OpenSSH servers: one sshd per test device, each device's filesystem a temp dir."""

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from edge_sdk.deploy import fleet
from edge_sdk.deploy.inventory import load_inventory
from edge_sdk.deploy.release import build_runtime_wheel, prepare_release
from edge_sdk.deploy.ssh import SshOptions
from tests.sshd import SSHD, CuttableLink, FakeDevice, keygen

pytestmark = pytest.mark.skipif(not os.path.exists(SSHD), reason="openssh-server is not installed")

FAKE_RUNTIME = Path(__file__).parent / "fake_runtime.py"


def runtime_command(mode="healthy"):
    return "{{python}} {} --health-file {{health_file}} --bundle {{bundle}} --mode {}".format(FAKE_RUNTIME, mode)


def make_bundle(where, target="jetson-tx2", payload=b"model-v1", big=0):
    """A bundle as the build step writes it: files + manifest.json with the sha256 and size of each."""
    where = Path(where)
    where.mkdir(parents=True)
    files = {"model.onnx": payload, "labels/skeleton.json": json.dumps({"parts": 18}).encode()}
    if big:
        files["calib.cache"] = os.urandom(big)
    for rel, data in files.items():
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_bytes(data)
    manifest = {"format": 1, "target": target, "precision": "fp16",
                "files": {rel: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for rel, d in files.items()}}
    (where / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return where


@pytest.fixture(scope="session")
def runtime_wheel(tmp_path_factory):
    return build_runtime_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def lab(tmp_path):
    """Start fake devices on demand: ``lab.add("dev1")``; everything is stopped after the test."""

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

        def inventory(self, mode="healthy", ports=None, extra=""):
            lines = ['[defaults]', 'user = "root"', 'identity = "{}"'.format(self.client_key),
                     'python = "{}"'.format(sys.executable), 'service = "process"',
                     "service_command = '{}'".format(runtime_command(mode)), "health_timeout = 10", extra, ""]
            for device in self.devices:
                port = (ports or {}).get(device.name, device.port)
                lines += ["[devices.{}]".format(device.name), 'host = "{}"'.format(device.host),
                          "port = {}".format(port), 'root = "{}"'.format(device.root),
                          'sysroot = "{}"'.format(device.sysroot), 'device_id = "{}"'.format(device.name), ""]
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


def release_of(tmp_path, wheel, name="v1", **bundle_kwargs):
    bundle = make_bundle(tmp_path / "bundles" / name, payload=name.encode(), **bundle_kwargs)
    return prepare_release(bundle, tmp_path / "work" / name, runtime_wheel=wheel)


def test_flash_one_device_installs_switches_and_keeps_the_previous_version(lab, tmp_path, runtime_wheel):
    device = lab.add("cam1")
    devices = load_inventory(lab.inventory())
    v1 = release_of(tmp_path, runtime_wheel, "v1")
    [result] = fleet.flash(devices, v1, lab.options())
    assert result.status == "updated", result
    assert (result.old_version, result.new_version) == (None, v1.version)
    assert device.current_version() == v1.version
    health = json.loads((device.root / "run" / "health.json").read_text())
    # the service runs the runtime installed for this version, on the unpacked, verified bundle
    assert health["runtime"].startswith(str(device.root / "versions" / v1.version / "site"))
    assert health["bundle"] == str(device.root / "versions" / v1.version / "bundle")
    assert (device.root / "versions" / v1.version / "bundle" / "model.onnx").read_bytes() == b"v1"
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
