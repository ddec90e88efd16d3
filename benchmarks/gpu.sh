#!/usr/bin/env bash
# The GPU benchmark figures in one run (< 8 minutes on one H100/H200-class GPU), from the repository root:
#
#   bash benchmarks/gpu.sh                 # writes benchmarks/gpu-results/ and prints a summary
#   SMOKE=1 DEVICE=cpu bash benchmarks/gpu.sh   # the same steps at toy sizes on a CPU (checks the script)
#
# 1. generation: the Stable Diffusion v1.4 architecture at random weights (the real model's compute), 512 px,
#    50 steps with guidance, ours (`dataigm generate`: batched, fp16 then bf16; SMOKE: fp32) against the per-image fp32
#    `pipe(prompt)` loop, images/s and their ratio (benchmarks/generation.py), and the share of the GPU's dense
#    bf16 peak that ours reaches, from 82.8 TFLOP per image (torch's FLOP counter on that architecture: the UNet
#    ~803 GFLOP per sample and step at 64x64 latents, x 50 steps x 2 for guidance, plus ~2.51 TFLOP of VAE decode);
# 2. the judge probe: images/s of the CLIP ViT-B/32 judge at 224 px on tensors already on the GPU (the model's
#    own rate), and of judge.predict_entries over 512 px PNG shards with the loader's default workers
#    (benchmarks/judges.py); their ratio says whether the loader keeps up;
# 3. the attack's prompts/s (benchmarks/attack.py), when that script exists.
#
# Each step has its own time limit; a step that fails or runs out of time is reported as skipped, with its log.
# PEAK_TFLOPS overrides the bf16 dense peak looked up from the GPU's name.
set -uo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-benchmarks/gpu-results}
TFLOP_PER_IMAGE=82.8
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TQDM_DISABLE=1

if [[ "${SMOKE:-0}" == 1 ]]; then
    GEN_ARGS=(--images 4 --steps 2 --size 64 --batch-size 4 --runs 1)
    JUDGE_ARGS=(--model resnet18 --img-size 32 --n 32 --size 64 --batch-size 16 --runs 1 --epochs 1)
    PROBE_N=32; DTYPES=(fp32); PROBE_MODEL=resnet18
    ATTACK_ARGS=(--prompts 2 --batch-size 2 --iterations 1 --timesteps 1 --runs 1)
else
    GEN_ARGS=(--sd14 --images 32 --steps 50 --size 512 --batch-size 16 --runs 1)
    JUDGE_ARGS=(--n 512 --size 512 --batch-size 128 --runs 1 --epochs 1)
    PROBE_N=8192; DTYPES=(fp16 bf16); PROBE_MODEL=default
    ATTACK_ARGS=(--sd14 --dtype bf16 --prompts 16 --batch-size 16 --iterations 5 --timesteps 2 --runs 1)
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, report a failure
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    echo "== $name (limit ${limit}s)"
    if timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; then
        echo "   done in $((SECONDS - start)) s"
    else
        echo "   SKIPPED: exit $? after $((SECONDS - start)) s (see $OUT/$name.log)"
    fi
}

"$PYTHON" - <<'EOF' | tee "$OUT/machine.txt"
import os, platform, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, GPU {gpu}")
EOF

# -- 1. generation, fp16 and bf16 (the loop is fp32 in both: it is the per-image scripts' default)
for dtype in "${DTYPES[@]}"; do
    step "generation-$dtype" 200 "$PYTHON" benchmarks/generation.py "${GEN_ARGS[@]}" --device "$DEVICE" --dtype "$dtype"
done

# -- 2. the judge probe: the model alone, then with our loader
step judge-model 90 "$PYTHON" - "$DEVICE" "$PROBE_N" "$PROBE_MODEL" <<'EOF'
import sys, time, torch
from detectors.judges.model import DEFAULT_MODEL, create_judge_model, pooled_features
device, n = torch.device(sys.argv[1]), int(sys.argv[2])
name = DEFAULT_MODEL if sys.argv[3] == "default" else sys.argv[3]
model = create_judge_model(name, 1, pretrained=False).to(device).eval()
dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
batch = torch.randn(256 if device.type == "cuda" else 16, 3, 224, 224, device=device)
with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
    pooled_features(model, batch)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, done = time.perf_counter(), 0
    while done < n:
        pooled_features(model, batch)
        done += batch.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
print(f"judge probe model only ({name}, 224 px, batch {batch.shape[0]}): {done / (time.perf_counter() - start):.1f} img/s")
EOF
WORKERS=$("$PYTHON" -c "from detectors.data import default_num_workers; print(default_num_workers())")
step judge-loader 200 "$PYTHON" benchmarks/judges.py "${JUDGE_ARGS[@]}" --device "$DEVICE" --num-workers "$WORKERS"

# -- 3. the attack (UnlearnDiffAtk, batched vs one prompt at a time), once benchmarks/attack.py exists
if [[ -f benchmarks/attack.py ]]; then
    step attack 150 "$PYTHON" benchmarks/attack.py "${ATTACK_ARGS[@]}" --device "$DEVICE"
else
    echo "== attack: SKIPPED (benchmarks/attack.py does not exist yet)"
fi

# -- summary
"$PYTHON" - "$OUT" "$TFLOP_PER_IMAGE" "${PEAK_TFLOPS:-}" "${DTYPES[@]}" <<'EOF' | tee "$OUT/summary.txt"
import re, sys
from pathlib import Path
out, per_image, peak_override, dtypes = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
machine = (out / "machine.txt").read_text().strip()
# dense bf16 tensor-core peaks (vendor data sheets), TFLOP/s
PEAKS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "4090": 165.0}
peak = float(peak_override) if peak_override else next((v for k, v in PEAKS.items() if k in machine), None)
print(machine)
def log(name):
    path = out / f"{name}.log"
    return path.read_text() if path.exists() else ""
for dtype in dtypes:
    text = log(f"generation-{dtype}")
    loop = re.search(r"pipe\(prompt\) loop, fp32\s+([\d.]+)\s+([\d.]+)", text)
    ours = re.search(r"dataigm generate\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", text)
    if not (loop and ours):
        print(f"generation {dtype}: skipped (no result; see {out}/generation-{dtype}.log)")
        continue
    rate = float(ours.group(2))
    share = f", {rate * per_image / peak:.0%} of the {peak:.0f} TFLOP/s bf16 peak" if peak else ", peak unknown (set PEAK_TFLOPS)"
    print(f"generation {dtype}: ours {rate:.2f} img/s vs loop fp32 {float(loop.group(2)):.2f} img/s "
          f"({ours.group(3)}x){share}")
model = re.search(r"model only .*: ([\d.]+) img/s", log("judge-model"))
print(f"judge probe, model only: {model.group(1) + ' img/s' if model else 'skipped'}")
loader = re.search(r"dataigm shards \(judge.predict_entries\)\s+([\d.]+)", log("judge-loader"))
print(f"judge probe, predict_entries from shards: {loader.group(1) + ' img/s' if loader else 'skipped'}")
attack = [line for line in log("attack").splitlines() if re.match(r"(method|one prompt|batched)", line)]
print("attack (UnlearnDiffAtk, SD-1.4 bf16):\n  " + ("\n  ".join(attack) if attack else f"skipped (see {out}/attack.log)"))
EOF
