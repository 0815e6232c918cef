#!/usr/bin/env bash
# The GPU check: what the CUDA build does on a GPU, in under 4 minutes, on a machine with an
# NVIDIA driver for CUDA 13 and the CUDA 13 libraries (cuBLAS, cuRAND, NVRTC), and with neither
# a Rust toolchain nor a network. The binaries come from a CPU machine:
#
#   bash benches/gpu-bundle.sh            # here: release build with --features cuda
#   # copy target/gpu-bundle/ over, then on the GPU machine:
#   bash gpu-bundle/gpu-check.sh
#
# Steps (every result is a JSON line in $GPU_CHECK_OUT/gpu-check.jsonl; a summary is printed):
#  1. prepare, on the CPU: a random-weight ViT-B/16 checkpoint in Hugging Face's layout
#     (346 MB), 2,000 photo-like 640x480 JPEGs, and the CPU f32 logits of the first 64;
#  2. find the GPU; where there is none, say so (a line starting "NO GPU") and stop, status 0;
#  3. the card: name, memory, driver, compute capability;
#  4. ViT-B/16 bf16 forward throughput at batch 64 and 256 (and with the 8-bit upload and
#     on-device normalisation included);
#  5. the end-to-end job (batch-inference --device cuda) over the 2,000 local images: images/s,
#     rows written, and the GPU's busy fraction (nvidia-smi's utilisation sampled every 100 ms
#     while the job runs, and the job's own model-busy time over its wall time);
#  6. agreement with the CPU f32 path: top-1 equality where the CPU's top-1 logit leads by at
#     least 1e-2, and the largest logit difference.
# Steps 4 and 5 each have a same-run baseline on the machine's own PyTorch (python3 with torch,
# transformers and torchvision; GPU_CHECK_PYTHON picks another; without one the baselines are
# skipped, saying so): Hugging Face's ViT-B/16 in the same dtype at the same batch sizes, and
# the GKE tutorial's DataLoader job over the same JPEGs (benches/python/gpu_baselines.py). The
# CUDA libraries of that Python environment (nvidia/*/lib under its site-packages: cuBLAS,
# cuRAND, NVRTC from NVIDIA's wheels) are found and put on LD_LIBRARY_PATH after the bundle's.
#
# Usage: gpu-check.sh [BIN_DIR]   BIN_DIR holds batch-inference and gpu_check built with
#   --features cuda (default: bin/ next to this script, then target/gpu-bundle/bin).
# Environment: GPU_CHECK_OUT (results; default $OUT when set, else ./gpu-check-results),
#   GPU_CHECK_WORK (scratch; default a temporary directory), GPU_CHECK_IMAGES (2000),
#   GPU_CHECK_AGREE (64), GPU_CHECK_SHAPE (base, or tiny for a quick run), GPU_CHECK_BATCH
#   (the job's --batch-size; default the job's default), GPU_CHECK_LIBS (directories put on
#   LD_LIBRARY_PATH for the CPU steps only: the link stubs when this runs on a CPU machine).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
start=$(date +%s)
say() { echo "[$(( $(date +%s) - start ))s] $*"; }

bin=${1:-}
if [[ -z $bin ]]; then
  for candidate in "$here/bin" "$here/../target/gpu-bundle/bin"; do
    [[ -x $candidate/gpu_check ]] && { bin=$candidate; break; }
  done
fi
for exe in batch-inference gpu_check; do
  [[ -x ${bin:-/nonexistent}/$exe ]] || {
    echo "gpu-check: no $exe in '${bin:-}' (build with benches/gpu-bundle.sh, or pass BIN_DIR)" >&2
    exit 2
  }
done
bin=$(cd "$bin" && pwd)

out=${GPU_CHECK_OUT:-${OUT:-$PWD/gpu-check-results}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
jsonl=$out/gpu-check.jsonl
: > "$jsonl"
work=${GPU_CHECK_WORK:-}
if [[ -z $work ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
images=${GPU_CHECK_IMAGES:-2000}
agree_n=${GPU_CHECK_AGREE:-64}
shape=${GPU_CHECK_SHAPE:-base}
# For testing this script's GPU steps on a CPU machine (with a stand-in nvidia-smi): cpu, f32.
device=${GPU_CHECK_DEVICE:-cuda}
dtype=${GPU_CHECK_DTYPE:-bf16}

# The Python environment of the baselines, and the CUDA libraries its NVIDIA wheels carry.
py=${GPU_CHECK_PYTHON:-$(command -v python3 || true)}
baselines=""
for candidate in "$here/gpu_baselines.py" "$here/python/gpu_baselines.py"; do
  [[ -f $candidate ]] && { baselines=$candidate; break; }
done
py_ok=""
if [[ -n $py && -n $baselines ]] && "$py" -c 'import torch, transformers, torchvision' 2>/dev/null; then
  py_ok=yes
fi
wheel_libs=""
if [[ -n $py ]]; then
  wheel_libs=$("$py" - <<'PY' 2>/dev/null || true
import glob, os, site, sys
roots = list(site.getsitepackages()) + [site.getusersitepackages()]
dirs = []
for root in roots:
    for d in sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib"))):
        if os.path.isdir(d) and d not in dirs:
            dirs.append(d)
print(":".join(dirs))
PY
)
fi
# The bundle's libcudart (from NVIDIA's wheel) first; the Python environment's CUDA libraries
# next; the machine's driver and libraries after.
gpu_libs="$here/lib${wheel_libs:+:$wheel_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cpu_libs="${GPU_CHECK_LIBS:+$GPU_CHECK_LIBS:}$gpu_libs"
cpu() { LD_LIBRARY_PATH=$cpu_libs "$@"; }
gpu() { LD_LIBRARY_PATH=$gpu_libs timeout "${STEP_TIMEOUT:-120}" "$@"; }
record() { tee -a "$jsonl"; }

say "1. preparing on the CPU ($shape model, $images images, CPU reference of $agree_n) in $work"
cpu "$bin/gpu_check" checkpoint --out "$work/model" --shape "$shape" | record
cpu "$bin/gpu_check" images --out "$work/images" --count "$images" | record
cpu "$bin/gpu_check" reference --model "$work/model" --images "$work/images" --count "$agree_n" \
  --out "$out/reference.safetensors" | record

say "2. looking for a GPU"
why=""
if ! command -v nvidia-smi >/dev/null 2>&1; then
  why="nvidia-smi is not installed (no NVIDIA driver)"
elif ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  why="nvidia-smi lists no GPU"
else
  missing=$(LD_LIBRARY_PATH=$gpu_libs ldd "$bin/batch-inference" | awk '/not found/ {print $1}' | tr '\n' ' ')
  [[ -z $missing ]] || why="the CUDA libraries ${missing% } are missing (put them on LD_LIBRARY_PATH)"
fi
if [[ -z $why ]] && ! probe=$(gpu "$bin/gpu_check" probe --device "$device"); then
  why="CUDA cannot open device 0: $probe"
fi
if [[ -n $why ]]; then
  echo "{\"gpu\": null, \"reason\": \"${why//\"/\'}\"}" >> "$jsonl"
  echo "NO GPU: $why. Stopping before the GPU measurements (steps 3 to 6); the preparation above ran."
  exit 0
fi
echo "$probe" | record

say "3. the card"
card=$(nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader | head -n 1)
echo "{\"card\": \"$card\", \"device\": \"$device\"}" | record

say "4. model throughput, $dtype"
gpu "$bin/gpu_check" throughput --device "$device" --dtype "$dtype" --shape "$shape" --batch 64 --batch 256 | record
if [[ -n $py_ok ]]; then
  say "4b. baseline: transformers ViT in $dtype, same batch sizes ($py)"
  gpu "$py" "$baselines" throughput --model "$work/model" --device "$device" --dtype "$dtype" \
    --batch 64 --batch 256 | record || echo '{"baseline": "transformers_vit", "error": "failed"}' | record
else
  echo '{"baseline": null, "reason": "no python3 with torch, transformers and torchvision (GPU_CHECK_PYTHON)"}' | record
fi

say "5. end-to-end job over $images local images"
nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 100 > "$work/util.csv" &
smi=$!
job_out=$work/job-out
gpu "$bin/batch-inference" --device "$device" --model "$work/model" --input "$work/images" \
  --output "$job_out" ${GPU_CHECK_BATCH:+--batch-size "$GPU_CHECK_BATCH"} --log-format json \
  > "$work/job.stdout" 2> "$work/job.stderr" || { kill "$smi"; tail -n 20 "$work/job.stderr" >&2; exit 1; }
kill "$smi" 2>/dev/null || true
wait "$smi" 2>/dev/null || true
rows=$(cat "$job_out"/results_*_shard_*.csv | grep -vc '^image_id' || true)
util=$(awk '{ s += $1; n++ } END { if (n) printf "%.3f", s / n / 100; else print "null" }' "$work/util.csv")
samples=$(wc -l < "$work/util.csv")
summary=$(cat "$job_out"/_job_summary_*.json)
field() { grep -Eo "\"$1\": [0-9.eE+-]+" <<<"$summary" | head -n 1 | awk '{ print $2 }'; }
rate=$(field images_per_sec)
wall=$(field wall_secs)
infer=$(field infer)
busy=$(awk -v i="$infer" -v w="$wall" 'BEGIN { if (w > 0) printf "%.3f", i / w; else print "null" }')
echo "{\"e2e_images\": $images, \"rows\": $rows, \"images_per_s\": $rate, \"wall_s\": $wall, \"model_busy_s\": $infer, \"model_busy_fraction\": $busy, \"gpu_utilization_mean\": $util, \"utilization_samples\": $samples, \"batch_size\": \"${GPU_CHECK_BATCH:-default}\"}" | record
[[ $rows -eq $images ]] || { echo "the job wrote $rows rows for $images images" >&2; exit 1; }

if [[ -n $py_ok ]]; then
  say "5b. baseline: the tutorial's DataLoader job over the same $images images"
  gpu "$py" "$baselines" job --model "$work/model" --input "$work/images" --output "$work/baseline.csv" \
    --device "$device" --dtype "$dtype" ${GPU_CHECK_BATCH:+--batch "$GPU_CHECK_BATCH"} | record \
    || echo '{"baseline": "tutorial_dataloader_job", "error": "failed"}' | record
fi

say "6. agreement with the CPU f32 path"
gpu "$bin/gpu_check" agree --model "$work/model" --images "$work/images" \
  --reference "$out/reference.safetensors" --device "$device" | record

# Ours against the baselines measured above, side by side.
if [[ -n $py_ok ]]; then
  "$py" - "$jsonl" <<'PY' || true
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
ours = {}
for l in lines:
    if "forward_images_per_s" in l and "batch" in l:
        ours[l["batch"]] = round(l["forward_images_per_s"], 1)
    if "e2e_images" in l:
        ours["job"] = l.get("images_per_s")
for l in lines:
    if l.get("baseline") == "transformers_vit":
        mine = ours.get(l["batch"])
        if mine:
            print(f"ViT at batch {l['batch']}: ours {mine} img/s, transformers {l['images_per_s']} img/s: {mine / l['images_per_s']:.2f}x")
    if l.get("baseline") == "tutorial_dataloader_job" and ours.get("job"):
        print(f"job over the images: ours {ours['job']} img/s, tutorial DataLoader job {l['images_per_s']} img/s: {ours['job'] / l['images_per_s']:.2f}x")
PY
fi

say "done; results in $jsonl"
