"""edge-sdk: OpenPose-style pose estimation from workstation training to a fleet of Jetson devices.

Importing this package stays lean (numpy only at most): the on-device runtime imports it on
JetPack 4.6 (Python 3.6) through JetPack 6/7.
"""

__version__ = "0.1.0"
