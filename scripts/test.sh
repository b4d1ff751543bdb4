#!/usr/bin/env bash
# Set up everything the test suite needs (idempotent) and run it: `bash scripts/test.sh [pytest args]`.
# System packages: mosquitto (MQTT tests), openssh-server (flash tests), postgresql (recorder tests), chromium
# (dashboard test). Python: a venv with every extra.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
missing=()
{ command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; } || missing+=(mosquitto)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

VENV="${EDGE_SDK_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# Once, in a venv made before the split: the old one-distribution edge-sdk owns the `edge-sdk` script, and
# upgrading it after edge-sdk-runtime was installed would delete the script the runtime just wrote.
if "$VENV/bin/python" -m pip show -q edge-sdk >/dev/null 2>&1 \
        && ! "$VENV/bin/python" -m pip show -q edge-sdk-runtime >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip uninstall -q -y edge-sdk >/dev/null
fi
"$VENV/bin/python" -m pip install -q -e ./runtime -e '.[host,train,fleet,dev]' >/tmp/edge-sdk-pip.log 2>&1 \
    || { cat /tmp/edge-sdk-pip.log; exit 1; }
VENV="$(cd "$VENV" && pwd)"

# JetPack 4.6 runs Python 3.6: where this machine has one (pyenv), the runtime tests run on it for real.
if [ -z "${EDGE_SDK_PY36:-}" ]; then
    for candidate in "$(command -v python3.6 || true)" "$HOME"/.pyenv/versions/3.6*/bin/python3.6; do
        # (a pyenv shim named python3.6 may exist and still not run: ask the interpreter itself)
        if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 6)' 2>/dev/null; then
            if [ ! -x .venv36/bin/python ] || ! .venv36/bin/python -c "import cv2, onnxruntime, paho.mqtt" 2>/dev/null; then
                echo "setting up .venv36 (Python 3.6 + the JetPack 4.6-era runtime dependencies)"
                { "$candidate" -m venv .venv36 \
                  && .venv36/bin/python -m pip install -q "pip==21.3.1" \
                  && .venv36/bin/python -m pip install -q --only-binary=:all: numpy==1.19.5 \
                       opencv-python-headless==4.6.0.66 onnxruntime==1.10.0 \
                  && .venv36/bin/python -m pip install -q paho-mqtt==1.6.1; } >/dev/null 2>&1 \
                  || echo "warning: could not set up .venv36; the Python 3.6 runtime tests will be skipped"
            fi
            [ -x .venv36/bin/python ] && export EDGE_SDK_PY36="$PWD/.venv36/bin/python"
            break
        fi
    done
fi

# The paho-mqtt 1.x client API (JetPack 4.6 devices) is tested against the real 1.6.1 sources, fetched here once.
PAHO1=".cache/paho-mqtt-1.6.1"
if [ ! -f "$PAHO1/paho-mqtt-1.6.1/src/paho/mqtt/client.py" ]; then
    mkdir -p "$PAHO1"
    { "$VENV/bin/python" -m pip download -q --no-deps --no-binary :all: paho-mqtt==1.6.1 -d "$PAHO1" \
      && tar -xzf "$PAHO1/paho-mqtt-1.6.1.tar.gz" -C "$PAHO1"; } >/dev/null 2>&1 \
      || echo "warning: could not fetch paho-mqtt 1.6.1; its client-API test will be skipped"
fi
[ -f "$PAHO1/paho-mqtt-1.6.1/src/paho/mqtt/client.py" ] && export EDGE_SDK_TEST_PAHO1="$PWD/$PAHO1/paho-mqtt-1.6.1/src"

export PATH="$VENV/bin:$PATH"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
"$VENV/bin/python" -m ruff check .
exec "$VENV/bin/python" -m pytest "$@"
