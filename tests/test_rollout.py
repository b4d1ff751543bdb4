"""Staged rollouts: wave planning, and a 10-device rollout on real sshd devices that a bad wave stops and
`--resume` completes."""

import json

import pytest

from edge_sdk.deploy import fleet, rollout
from edge_sdk.deploy.inventory import Device, load_inventory
from edge_sdk.errors import ConfigError
from tests.test_flash import flash_cli, lab, release_of, runtime_wheel  # noqa: F401 (fixtures: real sshd devices)


def fake_devices(n, canary=()):
    return [Device("d{}".format(i), "127.0.0.1", groups=["canary"] if i in canary else []) for i in range(n)]


def sizes(plan):
    return [len(w) for w in plan]


def test_waves_are_counts_or_percentages_of_the_devices_still_to_do():
    waves = rollout.parse_waves("1,10%,50%,100%")
    assert sizes(rollout.plan_waves(fake_devices(10), waves)) == [1, 1, 4, 4]
    assert sizes(rollout.plan_waves(fake_devices(200), waves)) == [1, 20, 90, 89]
    assert sizes(rollout.plan_waves(fake_devices(3), rollout.parse_waves("5"))) == [3]
    assert sizes(rollout.plan_waves(fake_devices(10), rollout.parse_waves("2,3"))) == [2, 3, 5]  # the rest last
    plan = rollout.plan_waves(fake_devices(10, canary=(7, 8)), waves, "canary")
    assert [d.name for d in plan[0]] == ["d7", "d8"] and sizes(plan) == [2, 1, 1, 3, 3]
    for bad in ("0", "101%", "1,,2", "x", "-1", "10.5%"):
        with pytest.raises(ConfigError):
            rollout.parse_waves(bad)
    assert rollout.allowed_failures(rollout.parse_amount("5%", "m"), 40) == 2.0
    assert rollout.allowed_failures(rollout.parse_amount("0", "m", allow_zero=True), 40) == 0


def test_a_bad_wave_stops_the_rollout_and_resume_finishes_it(lab, tmp_path, runtime_wheel, edge_sdk_cli):  # noqa: F811
    devices = [lab.add("d{}".format(i)) for i in range(10)]
    v1 = release_of(tmp_path, runtime_wheel, "v1")
    assert all(r.ok for r in fleet.flash(load_inventory(lab.inventory()), v1, lab.options(parallel=10)))

    # v2 fails health on d3, d4, d5 (its runtime crashes there): the third wave (7 devices, max 20% = 1.4) stops
    bad = {"d3": "crash", "d4": "crash", "d5": "crash"}
    v2 = release_of(tmp_path, runtime_wheel, "v2")
    state = tmp_path / "rollout.json"
    done = rollout.rollout(load_inventory(lab.inventory(modes=bad)), v2, rollout.parse_waves("1,2,100%"),
                           lab.options(parallel=2), max_failures=rollout.parse_amount("20%", "m"),
                           state_path=state, waves_text="1,2,100%")
    by_name = {r.device: r for r in done.results}
    assert done.aborted and [w.aborted for w in done.waves] == [False, False, True]
    assert [len(w.devices) for w in done.waves] == [1, 2, 7]
    failed = [n for n, r in by_name.items() if not r.ok and r.status != "skipped"]
    assert 2 <= len(failed) <= 3 and set(failed) <= set(bad)
    assert all(by_name[n].status == "rolled-back" for n in failed)
    assert {"d6", "d7", "d8", "d9"} <= set(done.skipped)
    on = {d.name: d.current_version() for d in devices}
    assert all(on[n] == v2.version for n in ("d0", "d1", "d2"))
    assert all(on[n] == v1.version for n in on if n not in ("d0", "d1", "d2"))  # the rest stayed on v1
    assert all(d.runtime_alive() for d in devices)
    saved = json.loads(state.read_text())
    assert saved["aborted_wave"] == 3 and not saved["finished"] and saved["devices"]["d0"] == "updated"
    assert "rollout aborted" in done.summary() and "--resume" in done.summary()

    # the cause is fixed: --resume through the CLI flashes only the devices not yet on v2
    inventory = lab.inventory()
    proc = flash_cli(edge_sdk_cli, lab, v2_bundle(tmp_path), runtime_wheel, "--inventory", inventory,
                     "--waves", "1,2,100%", "--max-failures", "20%", "--resume", "--state", state,
                     "--version-label", v2.version)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not any(line.split()[:1] == ["d0"] for line in proc.stdout.splitlines())  # done before: not redone
    assert all(d.current_version() == v2.version and d.runtime_alive() for d in devices)
    assert json.loads(state.read_text())["finished"]

    other = release_of(tmp_path, runtime_wheel, "v3")
    with pytest.raises(ConfigError, match="is the rollout of version"):
        rollout.rollout(load_inventory(inventory), other, rollout.parse_waves("100%"), lab.options(),
                        state_path=state, resume=True)


def v2_bundle(tmp_path):
    return tmp_path / "bundles" / "v2"
