"""The kill matrix: for each phase of a flash, SIGKILL the device agent or cut the SSH link at a random offset
into that phase; afterwards the device must be on the old or the new version, intact (every file verified),
and a new flash must complete. Slow (two flashes per run), so opt-in:

    EDGE_SDK_KILL_MATRIX=3 python -m pytest -q -s tests/test_flash_kill_matrix.py   # 3 runs per phase and kind

It prints the counts; docs/flash.md records the last ones.
"""

import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from edge_sdk.deploy import agent, fleet
from edge_sdk.deploy.inventory import load_inventory
from edge_sdk.deploy.progress import Reporter
from tests.test_flash import lab, release_of, runtime_wheel  # noqa: F401 (fixtures: real sshd devices)

RUNS = int(os.environ.get("EDGE_SDK_KILL_MATRIX", "0") or 0)
pytestmark = pytest.mark.skipif(RUNS <= 0, reason="opt-in: EDGE_SDK_KILL_MATRIX=RUNS_PER_PHASE")

# phase -> (agent step that starts it, extra delay before the random offset, the release misbehaves)
PHASES = {
    "upload": (None, 0.0, None),
    "install-runtime": ("install-runtime", 0.0, None),
    "unpack": ("unpack", 0.0, None),
    "verify": ("verify", 0.0, None),
    "switch": ("switch", 0.0, None),
    "restart": ("start", 0.0, None),
    "health": ("health", 0.0, None),
    "probation": ("probation", 0.0, None),
    "commit": ("probation", 0.85, None),  # the probation is 1 s: around its end, where history.json is written
    "rollback": ("rollback", 0.0, "crash"),
}
PROBATION = 1.0


def agent_pids(root):
    """Device agents working on ``root`` (python - --root ROOT ... install|rollback)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path("/proc", entry, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-" in argv[:3] and str(root).encode() in argv and (b"install" in argv or b"rollback" in argv):
            pids.append(int(entry))
    return pids


def wait_agents_gone(root, timeout=60):
    deadline = time.time() + timeout
    while agent_pids(root) and time.time() < deadline:
        time.sleep(0.1)
    assert not agent_pids(root), "the agent did not finish"


class Strike(Reporter):
    """At the phase's first step (or, for the upload, once a random share went through), after a random
    offset: SIGKILL the agent, or cut the link."""

    def __init__(self, device, root, link, phase, how, rng):
        self.device, self.root, self.link, self.how = device, root, link, how
        self.step, delay, _ = PHASES[phase]
        self.offset = delay + rng.uniform(0.0, 0.25)
        self.share = rng.uniform(0.05, 0.95)
        self.fired = None
        self.landed = False  # the hit came while the flash was still under way
        self.done = False

    def _hit(self):
        if self.how == "cut":
            self.link.cut()
            self.fired = "cut"
            self.landed = not self.done
            return
        pids = agent_pids(self.root)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.fired = "killed {}".format(pids) if pids else "agent already gone"
        self.landed = bool(pids)

    def stage(self, device, stage, message=""):
        if device == self.device and self.step and stage == self.step and self.fired is None:
            self.fired = "armed"
            threading.Timer(self.offset, self._hit).start()

    def transfer(self, device, done, total):
        if device == self.device and self.step is None and self.fired is None and done > total * self.share:
            self._hit()


def runs_current(device):
    """The runtime is up and runs the version `current` points at (the fake runtime writes its bundle path)."""
    try:
        health = json.loads((device.root / "run" / "health.json").read_text())
    except (OSError, ValueError):
        return False
    return device.runtime_alive() and health.get("bundle") == str(
        device.root / "versions" / device.current_version() / "bundle")


def intact_version(device, allowed):
    """The version `current` points at: one of ``allowed``, its runtime and every bundle file verified."""
    version = device.current_version()
    assert version in allowed, (version, allowed)
    vdir = device.root / "versions" / version
    agent.verify_bundle(str(vdir / "bundle"))
    assert (vdir / "site" / "edge_sdk" / "__init__.py").is_file()
    assert json.loads((vdir / "release.json").read_text())["version"] == version
    return version


def test_kill_matrix(lab, tmp_path, runtime_wheel):  # noqa: F811
    device = lab.add("cam1")
    link = lab.link(device)
    good = load_inventory(lab.inventory(ports={"cam1": link.port}, health_timeout=10))
    crashing = load_inventory(lab.inventory(ports={"cam1": link.port}, health_timeout=10, modes={"cam1": "crash"}))
    options = lab.options(probation=PROBATION, retry_backoff=0.05, upload_retries=0)
    rng = random.Random(int(os.environ.get("EDGE_SDK_KILL_MATRIX_SEED", "16")))
    counter = [0]

    def new_release():
        counter[0] += 1
        return release_of(tmp_path, runtime_wheel, "r{}".format(counter[0]), big=1 << 20)

    base = new_release()
    assert fleet.flash(good, base, options)[0].status == "updated"
    table = {}
    only = [p for p in os.environ.get("EDGE_SDK_KILL_MATRIX_PHASES", "").split(",") if p]
    for phase, (_step, _delay, mode) in PHASES.items():
        if only and phase not in only:
            continue
        for how in ("kill", "cut"):
            if phase == "upload" and how == "kill":
                continue  # no agent runs during the upload (SFTP); the link cut is the interruption there
            runs = survived = stopped = landed = 0
            for _ in range(RUNS):
                old = device.current_version()
                new = new_release()
                strike = Strike("cam1", device.root, link, phase, how, rng)
                fleet.flash(crashing if mode else good, new, options, strike)
                if how == "cut":
                    strike.done = True  # the host saw the flash end (a cut agent may still be working)
                time.sleep(0.5)  # a timer that had not fired yet fires now (or the flash ended before it)
                link.restore()
                wait_agents_gone(device.root)
                runs += 1
                landed += strike.landed
                intact_version(device, {old, new.version})
                deadline = time.time() + 5  # a runtime just started writes its first health document
                while not runs_current(device) and time.time() < deadline:
                    time.sleep(0.1)
                stopped += not runs_current(device)
                if os.environ.get("EDGE_SDK_KILL_MATRIX_DEBUG") and not runs_current(device):
                    print("\n{} {} {}: current {} pid {} alive {}\n{}".format(
                        phase, how, strike.fired, device.current_version(), device.runtime_pid(),
                        device.runtime_alive(), (device.root / "run" / "runtime.log").read_text()[-1500:]))
                follow = new_release()  # and a new flash completes
                [again] = fleet.flash(good, follow, options)
                assert again.status == "updated", (phase, how, strike.fired, again)
                intact_version(device, {follow.version})
                assert device.runtime_alive()
                survived += 1
            table[(phase, how)] = (runs, landed, survived, stopped)
    row = "{:<16} {:<5} {:>4} {:>7} {:>9} {:>12}"
    lines = [row.format("PHASE", "HOW", "RUNS", "LANDED", "SURVIVED", "LEFT DOWN")]
    for (phase, how), (runs, hit, survived, stopped) in table.items():
        lines.append(row.format(phase, how, runs, hit, survived, stopped))
    total = sum(v[0] for v in table.values())
    lines.append("total: {} runs, {} landed while the flash was under way, {} survived (old or new version "
                 "intact, next flash completed)".format(total, sum(v[1] for v in table.values()),
                                                        sum(v[2] for v in table.values())))
    print("\n" + "\n".join(lines))
