#!/usr/bin/env bash
# Every GPU check and benchmark in one call of about 6 minutes (a lent GPU's time is short):
#   bash benchmarks/gpu_all.sh [OUT_DIR]
# Writes each script's full output to OUT_DIR (default: $OUT, else ./gpu-results) and prints the
# tables. Each part has its own time limit, so one hang cannot eat the others' time.
set -u
out="${1:-${OUT:-gpu-results}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
part() {  # part NAME SECONDS ARGS...: run one script under a time limit, keep its output
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    timeout "$limit" "$py" "$@" >"$out/$name.txt" 2>&1
    echo "(exit $?)"
    grep -v -i "warning" "$out/$name.txt" | tail -n 14
}
if ! "$py" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_all.sh needs a CUDA GPU and none is visible; nothing was measured."
    exit 0
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
"$py" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
part checks 120 benchmarks/gpu_checks.py --work /tmp/gpu-checks
part fused_fp32_b64 80 benchmarks/bench_fused.py --device cuda --graphs --rounds 5 --steps 10 --threads 4
part fused_bf16_b256 80 benchmarks/bench_fused.py --device cuda --graphs --precision bf16 \
    --batch 256 --rounds 5 --steps 10 --threads 4
part train_step 70 benchmarks/bench_train_step.py --device cuda \
    --variants default,channels_last,fused --rounds 5 --steps 10 --threads 4
part throughput 140 benchmarks/bench_gpu.py --budget 120 --json "$out/gpu.json"
