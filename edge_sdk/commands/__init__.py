"""One module per `edge-sdk` subcommand (or group); each exposes ``register(subparsers)``."""
