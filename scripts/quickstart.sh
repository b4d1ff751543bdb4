#!/usr/bin/env bash
# The main job, end to end, on this machine (no GPU, no download):
#   a real COCO-trained model (models/tfpose-mnv2s) -> `edge-sdk build` bundles (CPU + a Jetson target) ->
#   `edge-sdk run` on a real video of people, publishing over MQTT to a local Mosquitto -> `edge-sdk subscribe`
#   records and renders the skeletons -> `edge-sdk bench`.
# Usage: bash scripts/quickstart.sh                    (SOURCE=my.mp4 for your own video, MODEL=m.onnx for your model)
#        TRAIN=1 bash scripts/quickstart.sh            (train the synthetic demo model first and run it on synthetic
#                                                      people; needs the [train] extra)
# Re-running overwrites the previous results in $OUT. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/quickstart}"
VENV="${EDGE_SDK_VENV:-.venv}"
SUDO=""; [ "$(id -u)" != "0" ] && SUDO="sudo"
CHILDREN=()

die() { echo "quickstart: $*" >&2; exit 1; }
cleanup() {
    local pid
    for pid in "${CHILDREN[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${CHILDREN[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'echo; echo "quickstart: interrupted; stopped the broker, subscriber and runtime" >&2; exit 130' INT TERM
mkdir -p "$OUT"

# --- set-up (idempotent) --------------------------------------------------------------------------------
if ! { command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; }; then
    echo "== installing mosquitto (MQTT broker for the demo; log: $OUT/apt.log)"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto; } \
        >"$OUT/apt.log" 2>&1 || { tail -n 5 "$OUT/apt.log" >&2; die "apt-get could not install mosquitto (above); install it yourself (e.g. 'sudo apt-get install mosquitto') and run again"; }
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating the virtual environment $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed; install python3-venv (e.g. 'sudo apt-get install python3-venv')"
fi
EXTRAS="host"; [ "${TRAIN:-0}" = "1" ] && EXTRAS="host,train"
# Once, in a venv made before the split: the old one-distribution edge-sdk owns the `edge-sdk` script, and
# upgrading it after edge-sdk-runtime was installed would delete the script the runtime just wrote.
if "$VENV/bin/python" -m pip show -q edge-sdk >/dev/null 2>&1 \
        && ! "$VENV/bin/python" -m pip show -q edge-sdk-runtime >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip uninstall -q -y edge-sdk >/dev/null
fi
echo "== installing edge-sdk-runtime and edge-sdk[$EXTRAS] into $VENV (log: $OUT/pip.log)"
{ "$VENV/bin/python" -m pip install -q --upgrade pip && "$VENV/bin/python" -m pip install -q -e ./runtime -e ".[$EXTRAS]"; } \
    >"$OUT/pip.log" 2>&1 || { tail -n 15 "$OUT/pip.log" >&2; die "pip install failed (above; full log $OUT/pip.log)"; }
VENV="$(cd "$VENV" && pwd)"
export PATH="$VENV/bin:$PATH" TF_CPP_MIN_LOG_LEVEL=2

# --- the model and the video -----------------------------------------------------------------------------
MODEL="${MODEL:-models/tfpose-mnv2s/tfpose-mnv2s.onnx}"
if [ "${TRAIN:-0}" = "1" ]; then
    echo "== training the demo model on synthetic people (see models/demo/README.md)"
    bash models/demo/train.sh "$OUT/demo-run" "$OUT/demo.onnx"
    MODEL="$OUT/demo.onnx"
    echo "== generating 80 frames of synthetic people in $OUT/synthetic"
    python -c "from edge_sdk.synthetic_people import write_dataset; write_dataset('$OUT/synthetic', 80, width=640, height=480, seed=7, people=(2, 4))"
    SOURCE="${SOURCE:-$OUT/synthetic/images}"
fi
SOURCE="${SOURCE:-docs/media/street.mp4}"
[ -f "$MODEL" ] || die "model $MODEL not found"
[ -e "$SOURCE" ] || die "source $SOURCE not found"
FRAMES=$(python -c "
import sys, os, cv2
s = sys.argv[1]
if os.path.isdir(s):
    print(sum(1 for f in os.listdir(s) if f.lower().endswith(('.jpg', '.jpeg', '.png', '.bmp'))))
else:
    print(int(cv2.VideoCapture(s).get(cv2.CAP_PROP_FRAME_COUNT)))" "$SOURCE")
[ "$FRAMES" -gt 0 ] || die "no frames in $SOURCE"

echo "== build: a CPU bundle (ONNX Runtime) and a Jetson Orin Nano FP16 bundle (engine built on the device)"
rm -rf "$OUT/bundle-cpu" "$OUT/bundle-cpu.tar.gz" "$OUT/bundle-orin-nano" "$OUT/bundle-orin-nano.tar.gz"
edge-sdk build "$MODEL" --target cpu -o "$OUT/bundle-cpu"
edge-sdk build "$MODEL" --target jetson-orin-nano --fp16 -o "$OUT/bundle-orin-nano"
edge-sdk inspect "$OUT/bundle-orin-nano"

# --- a local broker, a subscriber, the runtime (results of an earlier run are replaced) -------------------
rm -f "$OUT/received.jsonl" "$OUT/poses.jsonl" "$OUT/subscriber.log"
rm -rf "$OUT/overlays"
PORT=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$PORT" > "$OUT/mosquitto.conf"
"$MOSQ" -c "$OUT/mosquitto.conf" >"$OUT/mosquitto.log" 2>&1 &
CHILDREN+=($!)
python -c "
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2).close(); sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)" "$PORT" || die "mosquitto did not start (log: $OUT/mosquitto.log)"

echo "== subscriber: records JSON lines to $OUT/received.jsonl, draws skeletons on the video's frames in $OUT/overlays"
edge-sdk subscribe --mqtt "mqtt://127.0.0.1:$PORT" --topic 'edge-sdk/+/poses' --save "$OUT/received.jsonl" \
    --render "$OUT/overlays" --frames "$SOURCE" --count "$FRAMES" --idle-timeout 15 --timeout 600 --json \
    > "$OUT/subscriber.log" 2>&1 &
SUBSCRIBER=$!
CHILDREN+=($SUBSCRIBER)
sleep 1

echo "== runtime: $SOURCE ($FRAMES frames) -> mqtt://127.0.0.1:$PORT (device id demo-cam)"
edge-sdk run --bundle "$OUT/bundle-cpu" --source "$SOURCE" --mqtt "mqtt://127.0.0.1:$PORT" --device-id demo-cam \
    --save "$OUT/poses.jsonl"
echo "== waiting for the subscriber to receive and draw all $FRAMES messages (at most 15 s after the last one)"
wait "$SUBSCRIBER" || true
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
messages = [json.loads(line) for line in open(out + "/received.jsonl")]
people = [len(m["people"]) for m in messages]
print("   received {} messages; people per frame: {}; frames with people: {} of {}".format(
    len(messages), people, sum(1 for p in people if p), len(people)))
PY
echo "   skeleton overlays: $OUT/overlays/demo-cam/"

echo "== bench: pipelined runtime vs sequential loop (ratio), plot in $OUT/bench.png"
edge-sdk bench --bundle "$OUT/bundle-cpu" --source "synthetic?w=640&h=480&people=3" --frames 100 --warmup 10 \
    --mode both -o "$OUT/bench.json" --plot "$OUT/bench.png" --markdown "$OUT/benchmarks.md"

echo "== done: everything is in $OUT/"
echo "   to use edge-sdk in this shell:  source $VENV/bin/activate    (or: export PATH=\"$VENV/bin:\$PATH\")"
