"""Target device profiles: one TOML file per device (loaded by edge_sdk.targets)."""
