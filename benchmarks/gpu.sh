#!/usr/bin/env bash
# The GPU checks in one short script: the whole study with --device cuda, the benchmarks'
# GPU variants (the batched minimal-epsilon search against the per-image loop, TEA's step
# cost against ERM's) and the CUDA-marked tests. Writes every output and a summary,
# gpu.md (the GPU's name, the study's stage times, the ratios), to $OUT (default gpu-results).
#
#   bash benchmarks/gpu.sh            # from the repository root, after `make setup`
#   OUT=/tmp/gpu PY=python bash benchmarks/gpu.sh
#
# It needs a CUDA build of torch 2.13.0 in $PY's environment (pytorch.org's wheel for your
# CUDA version; the Makefile installs the CPU build) and stops at once, saying so, when
# torch sees no CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-gpu-results}

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "benchmarks/gpu.sh: torch $("$PY" -c 'import torch; print(torch.__version__)') sees no CUDA GPU;" \
       "run this on a machine with one, with a CUDA build of torch" >&2
  exit 2
fi
mkdir -p "$OUT"
export SHORTCUTLAB_PROGRESS=0
GPU=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0))")
echo "GPU: $GPU"

# 1. the whole study on the GPU (a fresh directory, so every stage runs)
rm -rf "$OUT/study"
"$PY" -m shortcutlab study --out "$OUT/study" --device cuda > "$OUT/study.txt" 2>&1
# 2. the benchmarks' GPU variants
"$PY" benchmarks/bench_attack.py --device cuda --images 256 --search-images 64 \
  --ensemble-images 128 > "$OUT/bench_attack.txt" 2>&1
"$PY" benchmarks/bench_intervene.py --device cuda --methods erm-control,tea \
  > "$OUT/bench_intervene.txt" 2>&1
# 3. the CUDA-marked tests
"$PY" -m pytest -m cuda -q -p no:cacheprovider > "$OUT/tests.txt" 2>&1 || TESTS_FAILED=1

"$PY" - "$OUT" "$GPU" <<'PYTHON' | tee "$OUT/gpu.md"
import json, pathlib, re, sys
out, gpu = pathlib.Path(sys.argv[1]), sys.argv[2]
summary = json.loads((out / "study" / "summary.json").read_text())
print(f"# GPU checks on {gpu}\n")
print(f"study: {summary['seconds']:.0f} s of stages on {summary['device']} (target 90 s); "
      f"peak resident memory {summary.get('peak_memory_bytes', 0) / 2**30:.2f} GiB")
for name, timing in summary["timings"].items():
    print(f"- {name}: {timing['seconds']:.1f} s")
attack = (out / "bench_attack.txt").read_text()
found = re.search(r"speedup ([0-9.]+)x", attack)
print(f"\nminimal epsilon, batched vs per-image loop: {found.group(1) if found else '?'}x (target 5x)")
tea = re.search(r"TEA double-backpropagation factor: ([0-9.]+)x",
                (out / "bench_intervene.txt").read_text())
print(f"TEA step cost: {tea.group(1) if tea else '?'}x ERM per image")
tests = (out / "tests.txt").read_text().strip().splitlines()
print(f"\nCUDA-marked tests: {tests[-1] if tests else 'no output'}")
PYTHON
exit "${TESTS_FAILED:-0}"
