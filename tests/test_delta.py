"""Delta transfer on real sshd devices: only the files a device's store lacks are sent (bytes counted), and an
upload cut mid-file is retried with backoff and resumes where it stopped, within the same flash."""

import os
import threading

from edge_sdk.deploy import fleet
from edge_sdk.deploy.inventory import load_inventory
from edge_sdk.deploy.release import prepare_release
from tests.test_flash import StageLog, lab, runtime_wheel  # noqa: F401 (fixtures: real sshd devices)

CALIB = os.urandom(3 << 20)  # the same calibration cache in every version of this test


def bundle_with_calib(tmp_path, name, model):
    from edge_sdk.targets import get_target

    from edge_sdk.bundle_writer import Precision, write_bundle
    from edge_sdk.runtime.model_meta import ModelMeta

    where = tmp_path / "bundles" / name
    where.parent.mkdir(parents=True, exist_ok=True)
    (where.parent / (name + ".onnx")).write_bytes(model)
    (where.parent / (name + ".calib")).write_bytes(CALIB)
    return write_bundle(where, model_path=where.parent / (name + ".onnx"), meta=ModelMeta(),
                        target=get_target("jetson-tx2"), precision=Precision("fp16", "fp16"),
                        engine={"status": "build-on-device"},
                        extra_files={"calib.cache": where.parent / (name + ".calib")}).directory


def sent_bytes(stages, device):
    return [int(m.split()[0]) for d, s, m in stages.stages if d == device and s == "uploaded"]


def test_only_the_changed_files_are_sent(lab, tmp_path, runtime_wheel):  # noqa: F811
    device = lab.add("cam1")
    devices = load_inventory(lab.inventory())
    v1 = prepare_release(bundle_with_calib(tmp_path, "v1", b"model one"), tmp_path / "w1", runtime_wheel=runtime_wheel)
    first = StageLog()
    assert fleet.flash(devices, v1, lab.options(), first)[0].status == "updated"
    everything = runtime_wheel.stat().st_size + len(CALIB) + len(b"model one") + len(
        (tmp_path / "bundles" / "v1" / "manifest.json").read_bytes())
    assert sent_bytes(first, "cam1") == [everything]

    # a new model, same runtime wheel and calibration: the model and the manifest travel, nothing else
    v2_dir = bundle_with_calib(tmp_path, "v2", b"model number two")
    v2 = prepare_release(v2_dir, tmp_path / "w2", runtime_wheel=runtime_wheel)
    second = StageLog()
    assert fleet.flash(devices, v2, lab.options(), second)[0].status == "updated"
    assert sent_bytes(second, "cam1") == [len(b"model number two") + (v2_dir / "manifest.json").stat().st_size]
    assert (device.root / "versions" / v2.version / "bundle" / "calib.cache").read_bytes() == CALIB
    # the store holds the files of the versions kept, nothing else, and no partial upload is left
    store = device.root / "store"
    assert len([p for p in store.iterdir() if p.is_file()]) == 6  # wheel, calib, 2 models, 2 manifests
    assert not list((store / ".partial").iterdir())


class CutOnceAndRestore(StageLog):
    """Pulls the cable once half the upload went through, plugs it back in 0.3 s later."""

    def __init__(self, device, link):
        super().__init__()
        self.device, self.link, self.cut_at = device, link, None

    def transfer(self, device, done, total):
        if device == self.device and self.cut_at is None and total // 2 < done < total:
            self.cut_at = done
            self.link.cut()
            threading.Timer(0.3, self.link.restore).start()


def test_an_upload_cut_mid_file_is_retried_and_resumes(lab, tmp_path, runtime_wheel):  # noqa: F811
    device = lab.add("cam1")
    link = lab.link(device)
    devices = load_inventory(lab.inventory(ports={"cam1": link.port}))
    v1 = prepare_release(bundle_with_calib(tmp_path, "v1", b"m1"), tmp_path / "w1", runtime_wheel=runtime_wheel)
    cutter = CutOnceAndRestore("cam1", link)
    [result] = fleet.flash(devices, v1, lab.options(retry_backoff=0.5), cutter)
    assert cutter.cut_at is not None
    assert result.status == "updated", result
    assert cutter.seen("cam1", "retrying", "attempt 2 of 4")
    resumed = [m for d, s, m in cutter.stages if s == "uploading" and m.startswith("resuming ")]
    assert resumed, cutter.stages
    # what the retry sent + what went through before the cut is about the release, not twice a file
    total = v1.wheel.stat().st_size + len(CALIB) + 2 + (tmp_path / "bundles" / "v1" / "manifest.json").stat().st_size
    [after] = sent_bytes(cutter, "cam1")
    assert after < total - cutter.cut_at + (1 << 18) * 4  # resumed near the cut (SFTP keeps a few blocks in flight)
    assert device.current_version() == v1.version and device.runtime_alive()
