"""Host side of `edge-sdk flash`: push the runtime and a bundle to devices over SSH, A/B install, health, rollback.

- ``inventory``: devices and groups (TOML) and ``user@host:port`` specs
- ``release``: what gets pushed (runtime wheel + bundle tarball) and its version label
- ``ssh``: asyncssh connections (key auth, known_hosts checking, trust on first use) and the agent protocol
- ``agent``: the device-side program (Python 3.6, stdlib only), sent over SSH on every call
- ``fleet``: flash / status / rollback over many devices in parallel with a bound
- ``progress``: per-device progress display and the final table
"""
