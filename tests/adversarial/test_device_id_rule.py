"""Issue #13 item 2/13: one device id rule, ``[A-Za-z0-9_.-]{1,64}`` and not '.'/'..', everywhere."""

import pytest

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.ids import check_device_id, is_device_id
from edge_sdk.runtime.mqtt import MqttPublisher

GOOD = ["cam-01", "jetson_nano.lab", "A", "x" * 64, "...", "-dash"]
BAD = ["", ".", "..", "../../x", "cam 01", "cam-01\ntopic readwrite #", "cam\x00", "a/b", "a+b", "a#", "x" * 65,
       "caméra", " cam", "cam\t", None, 7, b"cam"]


@pytest.mark.parametrize("device_id", GOOD)
def test_good_ids_pass_unchanged(device_id):
    assert is_device_id(device_id)
    assert check_device_id(device_id) == device_id


@pytest.mark.parametrize("device_id", BAD)
def test_bad_ids_are_refused_with_the_rule(device_id):
    assert not is_device_id(device_id)
    with pytest.raises(ConfigError, match=r"A-Za-z0-9_\.-|letters, digits"):
        check_device_id(device_id)


@pytest.mark.parametrize("device_id", ["cam-01\ntopic readwrite x", "..", "cam 01"])
def test_publisher_refuses_a_bad_id_before_connecting(device_id):
    with pytest.raises(ConfigError, match="1-64 letters"):
        MqttPublisher("mqtt://127.0.0.1:1", device_id)
