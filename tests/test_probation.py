"""Probation before commit on real sshd devices: a version that came up healthy is watched for a window and
rolled back if it stops, or runs below the fps floor; `devices status` shows a device in probation."""

import threading
import time

from edge_sdk.commands.flash import parse_duration
from edge_sdk.deploy import fleet
from edge_sdk.deploy.inventory import load_inventory
from tests.test_flash import lab, release_of, runtime_wheel  # noqa: F401 (fixtures: real sshd devices)


def history(device):
    import json

    return json.loads((device.root / "history.json").read_text())["versions"]


def test_probation_commits_a_good_version_and_status_shows_it(lab, tmp_path, runtime_wheel):  # noqa: F811
    device = lab.add("cam1")
    devices = load_inventory(lab.inventory())
    v1 = release_of(tmp_path, runtime_wheel, "v1")
    done = []
    flashing = threading.Thread(target=lambda: done.extend(fleet.flash(devices, v1, lab.options(probation=2.0))))
    flashing.start()
    seen = ""
    deadline = time.time() + 30
    while flashing.is_alive() and time.time() < deadline and not seen:
        [row] = fleet.status(devices, lab.options())
        seen = row.probation
        time.sleep(0.2)
    flashing.join(60)
    assert seen.startswith("probation:") and "left" in seen, seen
    assert "PROBATION" in fleet.format_status([row])
    [result] = done
    assert result.status == "updated" and history(device) == [v1.version], result
    [after] = fleet.status(devices, lab.options())
    assert after.probation == "" and after.running


def test_probation_rolls_back_a_version_that_stops_or_is_too_slow(lab, tmp_path, runtime_wheel):  # noqa: F811
    device = lab.add("cam1")
    v1 = release_of(tmp_path, runtime_wheel, "v1")
    assert fleet.flash(load_inventory(lab.inventory()), v1, lab.options())[0].status == "updated"

    flaky = load_inventory(lab.inventory(modes={"cam1": "flaky"}))
    v2 = release_of(tmp_path, runtime_wheel, "v2")
    [result] = fleet.flash(flaky, v2, lab.options(probation=6.0))
    assert result.status == "rolled-back", result
    assert "failed probation" in result.message and "the runtime stopped" in result.message
    assert device.current_version() == v1.version and device.runtime_alive() and history(device) == [v1.version]

    slow = load_inventory(lab.inventory(modes={"cam1": "slow"}))
    v3 = release_of(tmp_path, runtime_wheel, "v3")
    [result] = fleet.flash(slow, v3, lab.options(probation=3.0, min_fps=2.0))
    assert result.status == "rolled-back" and "0.5 fps, below the floor of 2" in result.message, result
    assert device.current_version() == v1.version and device.runtime_alive()
    # without a floor the same runtime passes
    [result] = fleet.flash(slow, v3, lab.options(probation=1.0))
    assert result.status == "updated", result


def test_probation_durations():
    assert [parse_duration(t) for t in ("90", "90s", "10m", "1h")] == [90, 90, 600, 3600]
    import pytest

    from edge_sdk.errors import ConfigError

    for bad in ("0", "-5", "2d", "10 m", "25h", "x"):
        with pytest.raises(ConfigError):
            parse_duration(bad)
