"""MQTT security against a real Mosquitto: TLS with a test CA made here, client certificates, and the
configuration `edge-sdk broker-config` writes (per-device passwords, ACL, anonymous refused)."""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from edge_sdk.broker_config import write_broker_config
from edge_sdk.errors import BrokerError, ConfigError
from edge_sdk.runtime import messages
from edge_sdk.runtime.mqtt import MqttPublisher
from edge_sdk.subscriber import subscribe
from tests.conftest import free_port

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl is needed to make the test CA")


def _openssl(*args, cwd):
    subprocess.run([OPENSSL] + list(args), cwd=str(cwd), check=True, capture_output=True)


def _issue(ca, name, cn, cwd, server=False):
    """A key + certificate for ``cn`` signed by ``ca`` (EC P-256: quick to make)."""
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=cwd)
    ext = Path(cwd) / (name + ".ext")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else "extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key", "-CAcreateserial",
             "-out", name + ".crt", "-days", "2", "-extfile", ext.name, cwd=cwd)


@pytest.fixture(scope="module")
def pki():
    """Test CA, broker certificate for 127.0.0.1, a client certificate, and a rogue CA with its own client.

    Made in a world-readable temp dir: mosquitto started as root reads them after dropping to its own user.
    """
    d = Path(tempfile.mkdtemp(prefix="edge-sdk-pki-"))
    d.chmod(0o755)
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", ca + ".key", "-out", ca + ".crt", "-days", "2", "-subj", "/CN=edge-sdk " + ca,
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 cwd=d)
    _issue("ca", "server", "127.0.0.1", d, server=True)
    _issue("ca", "client", "cam-01", d)
    _issue("ca", "dashboard", "dashboard", d)
    _issue("rogue-ca", "rogue", "cam-01", d)
    for f in d.iterdir():
        f.chmod(0o644)
    yield {k: str(d / k) for k in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key",
                                    "dashboard.crt", "dashboard.key", "rogue-ca.crt", "rogue.crt", "rogue.key")}
    shutil.rmtree(d, ignore_errors=True)


def _message(device, seq):
    return messages.build_pose_message(device, seq, float(seq), 8, 8, "test", [])


def _publisher(url, device, **kw):
    return MqttPublisher(url, device, reconnect_min=0.1, reconnect_max=0.5, **kw)


def test_tls_with_client_certificates(mosquitto_factory, pki):
    port = free_port()
    broker = mosquitto_factory(port=port, listener_config=(
        "listener {} 127.0.0.1\nallow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\n"
        "require_certificate true\n").format(port, pki["ca.crt"], pki["server.crt"], pki["server.key"])).start()
    url = "mqtts://127.0.0.1:{}".format(port)
    good = {"tls_ca": pki["ca.crt"], "tls_cert": pki["client.crt"], "tls_key": pki["client.key"]}

    sub = subscribe(url, count=3, timeout=10, **good)
    pub = _publisher(url, "cam-01", **good).connect(5)
    for i in range(3):
        pub.write(_message("cam-01", i))
    assert [m["seq"] for m in sub] == [0, 1, 2]
    pub.close()

    with pytest.raises(BrokerError, match="TLS"):  # a client certificate from another CA is refused
        _publisher(url, "cam-01", tls_ca=pki["ca.crt"], tls_cert=pki["rogue.crt"],
                   tls_key=pki["rogue.key"]).connect(3)
    with pytest.raises(BrokerError):  # no client certificate at all
        _publisher(url, "cam-01", tls_ca=pki["ca.crt"]).connect(3)
    with pytest.raises(BrokerError, match="--tls-ca"):  # the broker's certificate is not from the CA we trust
        _publisher(url, "cam-01", tls_ca=pki["rogue-ca.crt"], tls_cert=pki["client.crt"],
                   tls_key=pki["client.key"]).connect(3)
    broker.stop()


@pytest.mark.parametrize("use_mosquitto_passwd", [True, False], ids=["mosquitto_passwd", "python-pbkdf2"])
def test_broker_config_acl_passwords_and_tls(mosquitto_factory, pki, tmp_path, use_mosquitto_passwd):
    if use_mosquitto_passwd and not shutil.which("mosquitto_passwd") and not Path("/usr/bin/mosquitto_passwd").exists():
        pytest.skip("mosquitto_passwd not installed")
    port = free_port()
    fleet = tmp_path / "fleet.toml"
    fleet.write_text((
        'prefix = "edge-sdk"\n[broker]\nport = {}\nbind = "127.0.0.1"\ncafile = "{}"\ncertfile = "{}"\n'
        'keyfile = "{}"\n\n[[devices]]\nid = "cam-a"\n\n[[devices]]\nid = "cam-b"\npassword = "b-secret"\n\n'
        '[[subscribers]]\nname = "dashboard"\n\n[[subscribers]]\nname = "ops"\n').format(
            port, pki["ca.crt"], pki["server.crt"], pki["server.key"]))
    out = Path(tempfile.mkdtemp(prefix="edge-sdk-broker-"))  # mosquitto (as its own user) must read passwd/acl
    try:
        out.chmod(0o755)
        result = write_broker_config(fleet, out, use_mosquitto_passwd=use_mosquitto_passwd)
        for f in (result.password_file, result.acl_file):
            f.chmod(0o644)
        assert "b-secret" not in result.password_file.read_text()  # hashed
        assert (result.credentials["cam-b"].stat().st_mode & 0o777) == 0o600
        acl = result.acl_file.read_text()
        assert "user cam-a\ntopic write edge-sdk/cam-a/#" in acl and "topic read edge-sdk/#" in acl
        broker = mosquitto_factory(port=port, listener_config=result.conf.read_text()).start()
        url = "mqtts://127.0.0.1:{}".format(port)

        def password(name):
            return result.credentials[name].read_text().strip()

        with pytest.raises(BrokerError, match="not authorised"):  # anonymous
            _publisher(url, "cam-a", tls_ca=pki["ca.crt"]).connect(3)
        with pytest.raises(BrokerError, match="(?i)password|not authorised"):
            _publisher(url, "cam-a", tls_ca=pki["ca.crt"], password="wrong").connect(3)

        sub = subscribe(url, topic="edge-sdk/#", tls_ca=pki["ca.crt"], username="dashboard",
                        password=password("dashboard"), idle_timeout=1.5)
        a = _publisher(url, "cam-a", tls_ca=pki["ca.crt"], password=password("cam-a")).connect(5)
        b = _publisher(url, "cam-b", tls_ca=pki["ca.crt"], password="b-secret").connect(5)
        dash = _publisher(url, "ops", tls_ca=pki["ca.crt"], password=password("ops"),
                          prefix="edge-sdk").connect(5)  # another subscriber user: one client per user name
        a.write(_message("cam-a", 0))
        # cam-a tries to speak for cam-b: same topic, same message shape
        a._client.publish("edge-sdk/cam-b/poses", messages.encode_json(_message("cam-b", 99)), qos=1)
        dash.write(_message("ops", 7))  # subscribers may only read
        b.write(_message("cam-b", 1))
        assert a.flush(5) and b.flush(5) and dash.flush(5)
        time.sleep(0.2)
        a.write(_message("cam-a", 2))
        got = [(m["device"], m["seq"]) for m in sub]
        for p in (a, b, dash):
            p.close()
        broker.stop()
        assert sorted(got) == [("cam-a", 0), ("cam-a", 2), ("cam-b", 1)]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_broker_config_errors(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[[devices]]\nid = "cam/1"\n')
    with pytest.raises(ConfigError, match="not usable"):
        write_broker_config(fleet, tmp_path / "out")
    fleet.write_text('[[devices]]\nid = "cam-1"\n[[subscribers]]\nname = "cam-1"\n')
    with pytest.raises(ConfigError, match="twice"):
        write_broker_config(fleet, tmp_path / "out")
    fleet.write_text('[broker]\ncertfile = "missing.crt"\ncafile = "ca"\nkeyfile = "k"\n[[devices]]\nid = "a"\n')
    with pytest.raises(ConfigError, match="no such file"):
        write_broker_config(fleet, tmp_path / "out")
    with pytest.raises(ConfigError, match="not found"):
        write_broker_config(tmp_path / "nope.toml", tmp_path / "out")


def test_broker_config_cli(edge_sdk_cli, tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[[devices]]\nid = "cam-01"\n[[subscribers]]\nname = "ops"\n')
    proc = edge_sdk_cli("broker-config", "--devices", fleet, "-o", tmp_path / "out", check=True)
    assert "mosquitto -c" in proc.stdout and "cam-01" in proc.stdout
    conf = (tmp_path / "out" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "listener 1883" in conf
    assert (tmp_path / "out" / "passwd").read_text().startswith(("cam-01:$7$", "cam-01:$6$"))
    bad = edge_sdk_cli("broker-config", "--devices", tmp_path / "missing.toml", "-o", tmp_path / "o2")
    assert bad.returncode == 2 and "not found" in bad.stderr and "Traceback" not in bad.stderr


def test_certificate_identity_is_the_device_id(mosquitto_factory, pki, tmp_path):
    """require_certificate + use_identity_as_username: the certificate's CN is the user the ACL applies to,
    so a device with the certificate of cam-01 can publish only as cam-01, with no password at all."""
    port = free_port()
    fleet = tmp_path / "fleet.toml"
    fleet.write_text((
        '[broker]\nport = {}\nbind = "127.0.0.1"\ncafile = "{}"\ncertfile = "{}"\nkeyfile = "{}"\n'
        'require_certificate = true\nuse_identity_as_username = true\n[[devices]]\nid = "cam-01"\n'
        '[[devices]]\nid = "cam-02"\n[[subscribers]]\nname = "dashboard"\n').format(
            port, pki["ca.crt"], pki["server.crt"], pki["server.key"]))
    out = Path(tempfile.mkdtemp(prefix="edge-sdk-broker-"))
    try:
        out.chmod(0o755)
        result = write_broker_config(fleet, out)
        for f in (result.password_file, result.acl_file):
            f.chmod(0o644)
        assert "use_identity_as_username true" in result.conf.read_text()
        broker = mosquitto_factory(port=port, listener_config=result.conf.read_text()).start()
        url = "mqtts://127.0.0.1:{}".format(port)
        sub = subscribe(url, topic="edge-sdk/#", tls_ca=pki["ca.crt"], tls_cert=pki["dashboard.crt"],
                        tls_key=pki["dashboard.key"], idle_timeout=1.5)
        impostor = _publisher(url, "cam-02", tls_ca=pki["ca.crt"], tls_cert=pki["client.crt"],
                              tls_key=pki["client.key"]).connect(5)  # cam-01's certificate, cam-02's topic
        impostor.write(_message("cam-02", 5))
        assert impostor.flush(5)
        impostor.close(timeout=1)  # one certificate, one client id (use_username_as_clientid): one at a time
        cam = _publisher(url, "cam-01", tls_ca=pki["ca.crt"], tls_cert=pki["client.crt"],
                         tls_key=pki["client.key"]).connect(5)
        cam.write(_message("cam-01", 0))
        got = [(m["device"], m["seq"]) for m in sub]
        cam.close()
        broker.stop()
        assert got == [("cam-01", 0)]
    finally:
        shutil.rmtree(out, ignore_errors=True)
