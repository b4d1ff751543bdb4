"""Signed bundles: the agent's pure-Python Ed25519 against `cryptography`, keys/sign commands, and the device's
refusals (unsigned, untrusted key, revoked key, re-hashed tampered manifest) against real sshd devices."""

import json
import os
import shutil
import stat
import subprocess
import tarfile

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from edge_sdk.deploy import agent, fleet
from edge_sdk.deploy.inventory import load_inventory
from edge_sdk.deploy.release import prepare_release, read_bundle
from edge_sdk.runtime.bundle import write_manifest
from edge_sdk.signing import generate_keys, sign_bundle
from tests.test_flash import lab, make_bundle, runtime_wheel  # noqa: F401 (fixtures: real sshd devices)


def raw_public(private):
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_agent_ed25519_verify_agrees_with_cryptography():
    rng = __import__("random").Random(7)
    for _ in range(6):
        private = ed25519.Ed25519PrivateKey.generate()
        public = raw_public(private)
        message = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        signature = private.sign(message)
        assert agent.ed25519_verify(public, message, signature)
        flipped = bytearray(signature)
        flipped[rng.randrange(64)] ^= 1 << rng.randrange(8)
        assert not agent.ed25519_verify(public, message, bytes(flipped))
        assert not agent.ed25519_verify(public, message + b"x", signature)
        other = raw_public(ed25519.Ed25519PrivateKey.generate())
        assert not agent.ed25519_verify(other, message, signature)
    # s >= L (a malleated signature) and a short signature are refused
    big_s = signature[:32] + (int.from_bytes(signature[32:], "little") + agent.ED_Q).to_bytes(32, "little")
    assert not agent.ed25519_verify(public, message, big_s)
    assert not agent.ed25519_verify(public, message, signature[:63])


def test_agent_verify_runs_on_python36():
    py36 = os.environ.get("EDGE_SDK_PY36")
    if not py36 or not os.path.exists(py36):
        pytest.skip("no Python 3.6 interpreter (EDGE_SDK_PY36)")
    private = ed25519.Ed25519PrivateKey.generate()
    message = b"manifest bytes"
    args = [raw_public(private).hex(), message.hex(), private.sign(message).hex()]
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import agent; p, m, s = (bytes.fromhex(a) for a in "
            "sys.argv[2:]); print(agent.ed25519_verify(p, m, s), agent.ed25519_verify(p, m + b'!', s))")
    out = subprocess.run([py36, "-c", code, os.path.dirname(agent.__file__)] + args, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "False"], out.stderr


def test_keys_generate_and_sign_commands(tmp_path, edge_sdk_cli):
    proc = edge_sdk_cli("keys", "generate", "-o", tmp_path / "keys")
    assert proc.returncode == 0, proc.stderr
    key, pub = tmp_path / "keys" / "signing.key", tmp_path / "keys" / "signing.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = edge_sdk_cli("keys", "generate", "-o", tmp_path / "keys")
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr and "Traceback" not in again.stderr

    bundle = make_bundle(tmp_path / "b" / "v1")
    proc = edge_sdk_cli("sign", bundle, "--key", key)
    assert proc.returncode == 0, proc.stderr
    sig = json.loads((bundle / "manifest.sig").read_text())
    assert sig["key_id"] == pub.read_text().split()[2]
    manifest_bytes = (bundle / "manifest.json").read_bytes()
    public = agent.decode_public_key(pub.read_text().split()[1], "pub")
    import base64

    assert agent.ed25519_verify(public, manifest_bytes, base64.b64decode(sig["signature"]))
    # the sibling archive was rewritten with the signature, and the host's own checks accept it
    with tarfile.open(bundle.parent / "v1.tar.gz") as tf:
        assert "v1/manifest.sig" in tf.getnames()
    read_bundle(bundle.parent / "v1.tar.gz", tmp_path)
    read_bundle(bundle, tmp_path)

    # an archive alone is signed in place too
    other = make_bundle(tmp_path / "c" / "v2")
    shutil.rmtree(other)
    assert edge_sdk_cli("sign", other.parent / "v2.tar.gz", "--key", key).returncode == 0
    with tarfile.open(other.parent / "v2.tar.gz") as tf:
        assert "v2/manifest.sig" in tf.getnames()

    key.chmod(0o644)
    loose = edge_sdk_cli("sign", bundle, "--key", key)
    assert loose.returncode == 2 and "chmod 600" in loose.stderr


def signed_release(tmp_path, wheel, name, key=None, tamper=False):
    bundle = make_bundle(tmp_path / "bundles" / name, payload=name.encode())
    os.unlink(str(bundle) + ".tar.gz")  # flash the directory: the host packs what is in it now
    if key:
        sign_bundle(bundle, key)
    if tamper:  # a changed file AND the manifest re-hashed to match it: only the signature can tell
        (bundle / "model.onnx").write_bytes(b"evil model")
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest["files"]["model.onnx"] = {"sha256": agent.sha256_file(str(bundle / "model.onnx")),
                                           "size": len(b"evil model")}
        write_manifest(str(bundle), manifest)
    return prepare_release(bundle, tmp_path / "work" / name, runtime_wheel=wheel)


def test_device_refuses_unsigned_untrusted_revoked_and_rehashed_bundles(lab, tmp_path, runtime_wheel):  # noqa: F811
    device = lab.add("cam1")
    keys = {name: generate_keys(tmp_path / "keys", name) for name in ("a", "b", "c")}
    trusted = 'trusted_keys = ["{}", "{}"]'.format(keys["a"][1], keys["c"][1])
    devices = load_inventory(lab.inventory(allow_unsigned=False, extra=trusted))

    v1 = signed_release(tmp_path, runtime_wheel, "v1", keys["a"][0])
    [ok] = fleet.flash(devices, v1, lab.options())
    assert ok.status == "updated", ok
    assert device.current_version() == v1.version
    ring = json.loads((device.root / "keys" / "trusted.json").read_text())
    assert sorted(ring["keys"]) == sorted([keys["a"][2], keys["c"][2]])

    def refused(release, text, devs=devices):
        [result] = fleet.flash(devs, release, lab.options())
        assert result.status == "refused" and result.kind == "signature", result
        assert text in result.message, result.message
        assert device.current_version() == v1.version and device.runtime_alive()
        assert not (device.root / "versions" / release.version).exists()

    refused(signed_release(tmp_path, runtime_wheel, "unsigned"), "not signed")
    refused(signed_release(tmp_path, runtime_wheel, "by-b", keys["b"][0]), "does not trust")
    refused(signed_release(tmp_path, runtime_wheel, "rehashed", keys["a"][0], tamper=True), "does NOT match")

    revoking = load_inventory(lab.inventory(allow_unsigned=False, extra=trusted + '\nrevoked_keys = ["{}"]'.format(
        keys["c"][1])))
    by_c = signed_release(tmp_path, runtime_wheel, "by-c", keys["c"][0])
    refused(by_c, "REVOKED", revoking)
    refused(by_c, "REVOKED", devices)  # the revocation stays on the device even if the fleet file forgets it

    # a fleet that allows unsigned bundles installs one; a wrong signature is still refused there
    lax = load_inventory(lab.inventory(allow_unsigned=True))
    refused(signed_release(tmp_path, runtime_wheel, "rehashed2", keys["a"][0], tamper=True), "does NOT match", lax)
    [lax_ok] = fleet.flash(lax, signed_release(tmp_path, runtime_wheel, "unsigned2"), lab.options())
    assert lax_ok.status == "updated", lax_ok


def test_key_files_are_checked_before_any_device(tmp_path, lab, runtime_wheel):  # noqa: F811
    lab.add("cam1")
    (tmp_path / "bad.pub").write_text("edge-sdk-ed25519 AAAA zz\n")
    devices = load_inventory(lab.inventory(extra='trusted_keys = ["{}"]'.format(tmp_path / "bad.pub")))
    from edge_sdk.errors import ConfigError

    with pytest.raises(ConfigError, match="not an Ed25519 public key"):
        fleet.flash(devices, signed_release(tmp_path, runtime_wheel, "v1"), lab.options())


def test_cli_refuses_an_unsigned_bundle_before_connecting(tmp_path, runtime_wheel, edge_sdk_cli):  # noqa: F811
    bundle = make_bundle(tmp_path / "b" / "v1")
    # nothing listens at this address: the refusal must come before any connection
    args = ("flash", bundle, "--runtime-wheel", runtime_wheel, "--device", "root@127.0.0.99:9",
            "--connect-timeout", "1")
    proc = edge_sdk_cli(*args)
    assert proc.returncode == 2 and "is not signed and 1 device(s) require signed bundles" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    lax = edge_sdk_cli(*args, "--allow-unsigned")
    assert lax.returncode == 1 and "unreachable" in lax.stdout, lax.stdout + lax.stderr


@pytest.mark.parametrize("line, error", [
    ('trusted_keys = "keys/a.pub"', "must be a list"),
    ("trusted_keys = [1]", "list of at most 64 non-empty strings"),
    ('revoked_keys = ["a\\nb"]', "control character"),
    ('allow_unsigned = "yes"', "must be true or false"),
])
def test_fleet_file_signature_settings_are_checked(tmp_path, line, error):
    from edge_sdk.errors import ConfigError

    path = tmp_path / "fleet.toml"
    path.write_text('[defaults]\n{}\n[devices.cam1]\nhost = "10.0.0.1"\n'.format(line))
    with pytest.raises(ConfigError, match=error):
        load_inventory(path)


def test_key_files_in_the_fleet_file_are_relative_to_it(tmp_path):
    _priv, pub, kid = generate_keys(tmp_path / "fleet" / "keys")
    path = tmp_path / "fleet" / "fleet.toml"
    path.write_text('[defaults]\ntrusted_keys = ["keys/signing.pub"]\nrevoked_keys = ["{}"]\n'
                    '[devices.cam1]\nhost = "10.0.0.1"\n'.format(kid))
    [device] = load_inventory(path)
    assert device.trusted_keys == [str(pub)] and device.revoked_keys == [kid]
    args = fleet.signature_policy_args(device)
    assert json.loads(args[0].split("=", 1)[1])["revoked"] == [kid] and "--allow-unsigned" not in args


def test_build_sign_writes_a_verified_signature(tmp_path, edge_sdk_cli):
    from edge_sdk.testing.oracle_model import make_oracle

    private, pub, kid = generate_keys(tmp_path / "keys")
    case = make_oracle(tmp_path, num_frames=1)
    out = tmp_path / "bundle"
    missing = edge_sdk_cli("build", case.model_path, "--target", "cpu", "-o", out, "--sign", tmp_path / "nokey")
    assert missing.returncode == 2 and "not found" in missing.stderr and not out.exists()  # before the build
    edge_sdk_cli("build", case.model_path, "--target", "cpu", "-o", out, "--sign", private, check=True)
    sig = json.loads((out / "manifest.sig").read_text())
    import base64

    assert sig["key_id"] == kid and agent.ed25519_verify(
        agent.decode_public_key(pub.read_text().split()[1], "pub"), (out / "manifest.json").read_bytes(),
        base64.b64decode(sig["signature"]))
    with tarfile.open(str(out) + ".tar.gz") as tf:
        assert "bundle/manifest.sig" in tf.getnames()
