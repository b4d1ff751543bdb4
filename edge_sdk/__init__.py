"""edge-sdk: OpenPose-style pose estimation from workstation training to a fleet of Jetson devices.

Importing this package stays lean (numpy only at most): the on-device runtime imports it on
JetPack 4.6 (Python 3.6) through JetPack 6/7.
"""

from typing import Any, Iterator

__version__ = "0.1.0"


def subscribe(url: str, topic: str = "edge-sdk/+/poses", **options: Any) -> Iterator[dict]:
    """Receive pose messages: ``for msg in edge_sdk.subscribe("mqtt://host:1883"): ...``.

    See :func:`edge_sdk.subscriber.subscribe`; imported here lazily so ``import edge_sdk`` stays lean.
    """
    from edge_sdk.subscriber import subscribe as _subscribe

    return _subscribe(url, topic=topic, **options)
