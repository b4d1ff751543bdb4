#!/usr/bin/env bash
# Set up everything the test suite needs (idempotent) and run it: `bash scripts/test.sh [pytest args]`.
# System packages: mosquitto (MQTT tests), openssh-server (flash tests). Python: a venv with every extra.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
missing=()
{ command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; } || missing+=(mosquitto)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

VENV="${EDGE_SDK_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e '.[host,train,dev]'

export PATH="$PWD/$VENV/bin:$PATH"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
"$VENV/bin/python" -m ruff check .
exec "$VENV/bin/python" -m pytest "$@"
