#!/usr/bin/env bash
# The GPU checks, as one script for a machine with a CUDA GPU (and no network): the speed bench
# (issue 20's figures), the digits GPU-vs-CPU parity bench, the CUDA-only tests and the rest of
# the engine's tests on the GPU machine (the dashboard's need streamlit and plotly, not there). Each part has its own time limit; the logs go to $OUT
# (default ./out/gpu). Runs with the machine's own python3 (torch, torchvision, safetensors,
# scikit-learn, pytest); captum, if missing, from wheels in ./.whl.
#
#   bash bench/gpu_checks.sh
set -u
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if ! python3 -c "import captum" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'cudnn', torch.backends.cudnn.version(), 'cpus', __import__('os').cpu_count())"
  # the bf16 matrix ceiling measured on this card (8192^3, mean of 10 after 3 warm-ups)
  python3 - <<'EOF'
import torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
torch.cuda.synchronize(); s.record()
for _ in range(10): a @ b
e.record(); torch.cuda.synchronize()
print(f"measured bf16 matmul 8192^3: {2 * 8192**3 * 10 / (s.elapsed_time(e) / 1e3) / 1e12:.0f} TFLOP/s")
EOF
} 2>&1 | tee "$OUT/machine.txt"

echo "== speed (issue 20)"
timeout 260 python3 bench/bench_sau_speed.py --devices cuda --skip-cpu-memory --mfu-rounds 3 \
  2>&1 | tee "$OUT/speed.txt"
echo "speed exit: ${PIPESTATUS[0]}" | tee -a "$OUT/speed.txt"

echo "== parity (digits, GPU against CPU)"
timeout 200 python3 bench/bench_gpu_parity.py 2>&1 | tee "$OUT/parity.txt"
echo "parity exit: ${PIPESTATUS[0]}" | tee -a "$OUT/parity.txt"

echo "== tests (after the benches: 8 workers of 16 threads each would swamp their timings)"
OMP_NUM_THREADS=2 timeout 200 python3 -m pytest -q -p no:cacheprovider -p no:benchmark -n 8 \
  -m "not slow" --ignore=tests/browser --ignore=tests/test_dashboard_pages.py \
  --ignore=tests/test_dashboard_charts.py --ignore=tests/test_dashboard_explain.py \
  --ignore=tests/test_explain_sources.py --ignore=tests/test_packaging.py -rfs --tb=short \
  >"$OUT/tests.txt" 2>&1
echo "tests exit: $?" >>"$OUT/tests.txt"
grep -v '^\.\+ *\[' "$OUT/tests.txt" | tail -25
