"""Test devices: a real OpenSSH server per device on its own loopback address, its filesystem a temp dir.

Each ``FakeDevice`` has its own 127.0.0.x address and port, its own host key, a fake Jetson identity
(``<sysroot>/proc/device-tree/model`` and ``<sysroot>/etc/nv_tegra_release``) and its install root under
the sysroot. sshd runs as the current user (root in CI) and accepts only the test's client key.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import free_port, stop_process, wait_for_port  # noqa: F401 (re-exported for the flash tests)

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
TX2_MODEL = "NVIDIA Jetson TX2 Developer Kit"
TX2_RELEASE = "# R32 (release), REVISION: 7.1, GCID: 29689809, BOARD: t186ref, EABI: aarch64, DATE: Wed Feb 23 2022"
NANO_MODEL = "NVIDIA Jetson Nano Developer Kit"


def keygen(path):
    path = Path(path)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edge-sdk-test", "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)
    return path


class FakeDevice:
    def __init__(self, workdir, name, host, client_pubkey, model=TX2_MODEL, release=TX2_RELEASE):
        self.name = name
        self.host = host
        self.dir = Path(workdir) / name
        self.sysroot = self.dir / "fs"
        self.root = self.sysroot / "opt" / "edge-sdk"
        self.sshd_dir = self.dir / "sshd"
        self.sshd_dir.mkdir(parents=True)
        (self.sysroot / "proc" / "device-tree").mkdir(parents=True)
        (self.sysroot / "etc").mkdir(parents=True)
        # the kernel's device-tree model is NUL-terminated
        (self.sysroot / "proc" / "device-tree" / "model").write_bytes(model.encode() + b"\0")
        (self.sysroot / "etc" / "nv_tegra_release").write_text(release + "\n")
        self.host_key = keygen(self.sshd_dir / "host_ed25519")
        shutil.copy(client_pubkey, self.sshd_dir / "authorized_keys")
        os.chmod(self.sshd_dir / "authorized_keys", 0o600)
        self.port = free_port(host)
        self.proc = None

    @property
    def host_pubkey_line(self):
        kind, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return "[{}]:{} {} {}".format(self.host, self.port, kind, key)

    def start(self):
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation dir sshd insists on
        config = self.sshd_dir / "sshd_config"
        config.write_text("\n".join([
            "ListenAddress {}:{}".format(self.host, self.port),
            "HostKey {}".format(self.host_key),
            "PidFile {}".format(self.sshd_dir / "sshd.pid"),
            "AuthorizedKeysFile {}".format(self.sshd_dir / "authorized_keys"),
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",
            "Subsystem sftp internal-sftp",
            "LogLevel ERROR",
            "",
        ]))
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                     stdout=open(self.sshd_dir / "sshd.log", "ab"), stderr=subprocess.STDOUT)
        if not wait_for_port(self.host, self.port):
            self.stop()
            raise RuntimeError("sshd did not start:\n" + (self.sshd_dir / "sshd.log").read_text())
        return self

    def stop(self):
        self.proc = stop_process(self.proc)

    # what is on the device
    def current_version(self):
        link = self.root / "current"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def runtime_pid(self):
        import json

        try:
            return json.loads((self.root / "run" / "runtime.pid").read_text())["pid"]
        except (OSError, ValueError, KeyError):
            return None

    def runtime_alive(self):
        pid = self.runtime_pid()
        if pid is None:
            return False
        try:
            state = Path("/proc/{}/stat".format(pid)).read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state not in ("Z", "X")

    def stop_runtime(self):
        """Kill the runtime the agent (or the fake systemd) started on this device, if any."""
        pids = [self.runtime_pid()]
        for pid_file in (self.dir / "systemd").glob("*.pid"):
            pids.append(int(pid_file.read_text()))
        for pid in pids:
            if pid is None:
                continue
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass

    def fake_systemctl(self):
        """Install the systemctl double for this device; returns its path (the calls land in .calls)."""
        state = self.dir / "systemd"
        state.mkdir(exist_ok=True)
        path = state / "systemctl"
        path.write_text(FAKE_SYSTEMCTL.format(python=sys.executable, unit_dir=str(self.sysroot / "etc/systemd/system"),
                                              state=str(state)))
        path.chmod(0o755)
        return path

    @property
    def systemctl_calls(self):
        calls = self.dir / "systemd" / "calls.jsonl"
        return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


FAKE_SYSTEMCTL = '''#!{python}
"""Recorded-call double of systemctl for a test device (the test container has no systemd as PID 1).

Records every call, and for restart/stop/is-active does what systemd would with the unit file our agent
generated (Environment, WorkingDirectory, ExecStart with its quoting), so the unit is really exercised."""
import json, os, shlex, signal, subprocess, sys, time
UNIT_DIR, STATE = {unit_dir!r}, {state!r}
args = sys.argv[1:]
with open(os.path.join(STATE, "calls.jsonl"), "a") as f:
    f.write(json.dumps(args) + "\\n")
def unit(name):
    cfg = {{}}
    for line in open(os.path.join(UNIT_DIR, name + ".service")):
        if "=" in line and not line.startswith("["):
            key, value = line.rstrip("\\n").split("=", 1)
            cfg[key] = value.replace("%%", "%").replace("$$", "$")
    return cfg
def pid_of(name):
    try:
        return int(open(os.path.join(STATE, name + ".pid")).read())
    except (OSError, ValueError):
        return None
def alive(pid):
    try:
        state = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0]
    except (OSError, TypeError):
        return False
    return state not in ("Z", "X")
def stop(name):
    pid = pid_of(name)
    if pid and alive(pid):
        os.killpg(pid, signal.SIGTERM)
        while alive(pid):
            time.sleep(0.05)
command, name = args[0], (args[1] if len(args) > 1 else None)
if command == "daemon-reload":
    sys.exit(0)
if command == "enable":
    sys.exit(0 if os.path.exists(os.path.join(UNIT_DIR, name + ".service")) else 1)
if command in ("stop", "restart"):
    stop(name)
    if command == "restart":
        cfg = unit(name)
        env = dict(os.environ)
        for assignment in shlex.split(cfg.get("Environment", "")):
            key, value = assignment.split("=", 1)
            env[key] = value
        argv = shlex.split(cfg["ExecStart"])
        if not os.path.isabs(argv[0]):
            print("ExecStart must start with an absolute path: " + argv[0]); sys.exit(1)
        log = open(os.path.join(STATE, name + ".log"), "ab")
        proc = subprocess.Popen(argv, cwd=cfg["WorkingDirectory"], env=env, start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        open(os.path.join(STATE, name + ".pid"), "w").write(str(proc.pid))
    sys.exit(0)
if command == "is-active":
    running = alive(pid_of(name))
    print("active" if running else "inactive")
    sys.exit(0 if running else 3)
print("fake systemctl: unsupported " + " ".join(args)); sys.exit(1)
'''


class CuttableLink:
    """A TCP forwarder in front of a device's sshd: ``cut()`` drops every connection, like a pulled cable."""

    def __init__(self, host, target_host, target_port):
        self.host = host
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.sockets = []
        self.cut_done = False
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                if self.cut_done:
                    client.close()
                    upstream.close()
                    continue
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(16384)
                if not data or self.cut_done:
                    break
                dst.sendall(data)
                time.sleep(0.002)  # pace the link a little so a transfer takes many round trips
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        with self.lock:
            self.cut_done = True
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets = []

    def restore(self):
        with self.lock:
            self.cut_done = False

    def close(self):
        self.cut()
        self.listener.close()
