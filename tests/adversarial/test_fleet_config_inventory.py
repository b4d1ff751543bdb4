"""Issue #13, items 13, 16 and 17: hostile fleet files and device settings, at every entry point -- the
inventory loader and the CLI (host), the device agent writing a systemd unit, and a real flash over a real
sshd (tests/sshd.py) with host-side checks bypassed, so the agent's own check is what stops it."""

import dataclasses

import pytest

from edge_sdk.deploy import agent, fleet
from edge_sdk.deploy.inventory import load_inventory
from edge_sdk.errors import ConfigError
from tests.test_flash import lab, release_of, runtime_wheel  # noqa: F401 (fixtures: real sshd devices)

# quoted, so that shlex keeps the newline inside one argument of the runtime's command line
UNIT_INJECTION = "--source '/dev/video0\nExecStartPre=/bin/sh -c \"touch /tmp/edge-sdk-pwned\"'"


def write(tmp_path, text):
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ('devices = "cam1"\n', "`devices` must be a table"),
    ('[groups.lobby]\ndevices = "cam1"\n[devices.cam1]\nhost = "h"\n', "must be a list of device names"),
    ('defaults = ["x"]\n[devices.cam1]\nhost = "h"\n', "`defaults` must be a table"),
    ('[devices]\ncam1 = "10.0.0.21"\n', "`devices.cam1` must be a table"),
    ('[devices.cam1]\nhost = "h"\nport = "22"\n', "`port` must be an integer"),
    ('[devices.cam1]\nhost = "h"\nsudo = "yes"\n', "`sudo` must be true or false"),
    ('[devices.cam1]\nhost = "h"\nkeep = true\n', "`keep` must be an integer"),
    ('[devices.cam1]\nhost = 10\n', "`host` must be a string"),
    ('[devices.cam1]\nhost = "h"\nrun_args = "--source x\\nExecStartPre=/bin/true"\n', "control character"),
    ('[devices.cam1]\nhost = "h"\ndevice_id = "../../etc/cam"\n', "not usable"),
    ('[devices.cam1]\nhost = "h"\ndevice_id = "cam 1"\n', "not usable"),
])
def test_a_bad_inventory_is_one_clear_error(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_inventory(write(tmp_path, text))


def test_a_refused_value_is_not_echoed(tmp_path):
    """run_args carry camera URLs with passwords: the error names the setting, not its value."""
    text = '[devices.cam1]\nhost = "h"\nrun_args = "--source rtsp://cam:s3cret@10.0.0.5/1\\n--x"\n'
    with pytest.raises(ConfigError, match="`run_args` contains a control character") as err:
        load_inventory(write(tmp_path, text))
    assert "s3cret" not in str(err.value)
    with pytest.raises(agent.AgentError) as err:
        agent.systemd_escape("rtsp://cam:s3cret@10.0.0.5/1\nExecStartPre=/bin/true")
    assert "s3cret" not in str(err.value)


def select(tmp_path, text):
    """What `edge-sdk flash/devices/rollback --inventory` do before any connection."""
    import argparse

    from edge_sdk.deploy.cli_args import select_devices

    args = argparse.Namespace(inventory=str(write(tmp_path, text)), group=[], device=[], parallel=1, user=None,
                              identity=None, root=None, sysroot=None, python=None, sudo=None)
    return select_devices(args)


@pytest.mark.parametrize("text, message", [
    ('[devices."cam\\n1"]\nhost = "127.0.0.1"\n', "not usable"),
    ('[devices."cam/1"]\nhost = "127.0.0.1"\n', "not usable"),
    ('[devices."."]\nhost = "127.0.0.1"\n', "not usable"),
    ('[devices.cam1]\nhost = "127.0.0.1"\nservice_name = "edge-sdk/../../x"\n', "service_name"),
    ('[devices.cam1]\nhost = "127.0.0.1"\nmqtt_prefix = "edge-sdk/#"\n', "mqtt_prefix"),
])
def test_ids_names_and_prefixes_are_checked_before_any_connection(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        select(tmp_path, text)


def test_the_cli_says_it_in_one_line(tmp_path, edge_sdk_cli):
    for text, message in (('devices = "cam1"\n', "must be a table"),
                          ('[devices."cam\\n1"]\nhost = "127.0.0.1"\n', "not usable")):
        path = write(tmp_path, text)
        proc = edge_sdk_cli("flash", tmp_path / "no-bundle", "--inventory", path)  # refused before the bundle
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------------- item 16: agent


@pytest.mark.parametrize("value", ["a\nExecStartPre=/bin/true", "a\rb", "a\x00b", "tab\there", "esc\x1b[0m"])
def test_systemd_escape_lets_no_control_character_through(value):
    with pytest.raises(agent.AgentError, match="control character"):
        agent.systemd_escape(value)
    assert agent.systemd_escape("50%$HOME x") == "'50%%$$HOME x'"


def test_the_agent_writes_no_unit_with_an_injected_line(tmp_path):
    layout = agent.Layout(str(tmp_path / "root"), str(tmp_path))
    service = {"mode": "systemd", "name": "edge-sdk", "python": "/usr/bin/python3", "device_id": "cam-01",
               "run_args": UNIT_INJECTION}
    with pytest.raises(agent.AgentError, match="control character"):
        agent.unit_text(service, layout, "v1")
    for key, value in (("python", "/usr/bin/python3\nExecStartPre=/bin/true"), ("run_args", "")):
        with pytest.raises(agent.AgentError, match="control character"):
            bad_root = agent.Layout(str(tmp_path / "root\nExecStartPre=/bin/true"), str(tmp_path))
            agent.unit_text(dict(service, **{key: value}), bad_root if key == "run_args" else layout, "v1")
    for device_id in ("cam-01\nExecStartPre=/bin/true", "../../x", "cam 01"):
        with pytest.raises(agent.AgentError, match="not usable"):
            agent.render_command(dict(service, run_args="", device_id=device_id), layout, "v1")


def test_a_flash_with_an_injected_unit_line_is_refused_on_the_device(lab, tmp_path, runtime_wheel):  # noqa: F811
    """Over real SSH to a real sshd: a device whose settings skipped the host's checks (Python API callers
    build Device objects themselves) still gets no unit with an extra ExecStartPre line."""
    device = lab.add("cam1")
    systemctl = device.fake_systemctl()
    [good] = load_inventory(lab.inventory(service="systemd", extra='systemctl = "{}"'.format(systemctl)))
    hostile = dataclasses.replace(good, run_args=UNIT_INJECTION)
    v1 = release_of(tmp_path, runtime_wheel, "v1")
    [result] = fleet.flash([hostile], v1, lab.options())
    assert not result.ok and "control character" in result.message, result
    assert not (device.sysroot / "etc/systemd/system/edge-sdk.service").exists()
    assert device.current_version() is None and device.systemctl_calls == []


@pytest.mark.parametrize("label", ["../../etc", "v1\nExecStartPre=/bin/true", ".."])
def test_the_agent_refuses_a_version_label_that_is_not_a_name(tmp_path, capsys, label):
    code = agent.main(["--root", str(tmp_path / "root"), "--sysroot", str(tmp_path), "rollback", "--to", label])
    assert code == 1 and "version label" in capsys.readouterr().out
    assert not (tmp_path / "root").exists()
