#!/usr/bin/env bash
# The main job, end to end, on this machine (no GPU, no data download needed):
#   demo model -> `edge-sdk build` bundles (CPU + a Jetson target) -> `edge-sdk run` on a video, publishing
#   over MQTT to a local Mosquitto -> `edge-sdk subscribe` records and renders skeletons -> `edge-sdk bench`.
# Usage: bash scripts/quickstart.sh            (SOURCE=path/to/video.mp4 to use your own video)
#        TRAIN=1 bash scripts/quickstart.sh    (re-train the demo model first; needs the [train] extra)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/quickstart}"
VENV="${EDGE_SDK_VENV:-.venv}"
SUDO=""; [ "$(id -u)" != "0" ] && SUDO="sudo"

# --- set-up (idempotent) --------------------------------------------------------------------------------
if ! { command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; }; then
    echo "== installing mosquitto (MQTT broker for the demo)"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto >/dev/null
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
EXTRAS="host"; [ "${TRAIN:-0}" = "1" ] && EXTRAS="host,train"
mkdir -p "$OUT"
# Once, in a venv made before the split: the old one-distribution edge-sdk owns the `edge-sdk` script, and
# upgrading it after edge-sdk-runtime was installed would delete the script the runtime just wrote.
if "$VENV/bin/python" -m pip show -q edge-sdk >/dev/null 2>&1 \
        && ! "$VENV/bin/python" -m pip show -q edge-sdk-runtime >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip uninstall -q -y edge-sdk >/dev/null
fi
"$VENV/bin/python" -m pip install -q -e ./runtime -e ".[$EXTRAS]" >"$OUT/pip.log" 2>&1 || { cat "$OUT/pip.log"; exit 1; }
VENV="$(cd "$VENV" && pwd)"
export PATH="$VENV/bin:$PATH" TF_CPP_MIN_LOG_LEVEL=2

# --- the model -------------------------------------------------------------------------------------------
MODEL=models/demo/demo.onnx
if [ "${TRAIN:-0}" = "1" ] || [ ! -f "$MODEL" ]; then
    echo "== training the demo model on synthetic people (see models/demo/README.md)"
    bash models/demo/train.sh "$OUT/demo-run" "$OUT/demo.onnx"
    MODEL="$OUT/demo.onnx"
fi

echo "== target profiles"
edge-sdk targets

echo "== build: a CPU bundle (ONNX Runtime) and a Jetson Orin Nano FP16 bundle (engine built on the device)"
edge-sdk build "$MODEL" --target cpu -o "$OUT/bundle-cpu"
edge-sdk build "$MODEL" --target jetson-orin-nano --fp16 -o "$OUT/bundle-orin-nano"
edge-sdk inspect "$OUT/bundle-orin-nano"

# --- source: your video, or generated photos of synthetic people (with their ground truth) -----------------
if [ -z "${SOURCE:-}" ]; then
    echo "== generating 80 frames of synthetic people with COCO ground truth in $OUT/synthetic"
    python -c "from edge_sdk.synthetic_people import write_dataset; write_dataset('$OUT/synthetic', 80, width=640, height=480, seed=7, people=(2, 4))"
    SOURCE="$OUT/synthetic/images"
fi

# --- a local broker, a subscriber, the runtime ---------------------------------------------------------------
PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$PORT" > "$OUT/mosquitto.conf"
"$MOSQ" -c "$OUT/mosquitto.conf" >"$OUT/mosquitto.log" 2>&1 &
BROKER=$!
trap 'kill $BROKER 2>/dev/null || true' EXIT
sleep 0.5

echo "== subscriber (records JSON lines and renders skeleton overlays to $OUT/overlays)"
edge-sdk subscribe --mqtt "mqtt://127.0.0.1:$PORT" --topic 'edge-sdk/+/poses' --save "$OUT/received.jsonl" \
    --render "$OUT/overlays" --frames "$SOURCE" --idle-timeout 20 --timeout 300 --json > "$OUT/subscriber.log" 2>&1 &
SUBSCRIBER=$!
sleep 1

echo "== runtime: $SOURCE -> mqtt://127.0.0.1:$PORT (device id demo-cam)"
edge-sdk run --bundle "$OUT/bundle-cpu" --source "$SOURCE" --mqtt "mqtt://127.0.0.1:$PORT" --device-id demo-cam \
    --save "$OUT/poses.jsonl"
wait $SUBSCRIBER || true
echo "   subscriber received $(wc -l < "$OUT/received.jsonl") messages; overlays in $OUT/overlays/"

if [ -f "$OUT/synthetic/person_keypoints.json" ]; then
    echo "== eval: COCO keypoint AP of the demo model on the synthetic frames (pycocotools)"
    edge-sdk eval --bundle "$OUT/bundle-cpu" --coco "$OUT/synthetic/person_keypoints.json" \
        --images "$OUT/synthetic/images" -o "$OUT/eval.json"
fi

echo "== bench: pipelined runtime vs sequential loop (ratio), plot in $OUT/bench.png"
edge-sdk bench --bundle "$OUT/bundle-cpu" --source "synthetic?w=640&h=480&people=3" --frames 200 --warmup 20 \
    --mode both -o "$OUT/bench.json" --plot "$OUT/bench.png" --markdown "$OUT/benchmarks.md"

echo "== done: everything is in $OUT/"
