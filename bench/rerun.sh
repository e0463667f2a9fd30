#!/bin/bash
# Every measurement in bench/RESULTS.md, in one go (about 45 min on the 2-core machine). Run it on an
# otherwise idle machine: the figures are only comparable within one run. Needs ../shared/peers/setup.sh once
# (ONNX graphs, the shared weights as a diffusers folder, onnxruntime, PyTorch).
#   bench/rerun.sh [OUT_DIR]          default OUT_DIR: /tmp/autoencoderkl-bench-<date>
#   SKIP_1024=1 bench/rerun.sh        without the ~5-minute exact-tiling decode at 1024²
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-/tmp/autoencoderkl-bench-$(date +%Y%m%d-%H%M)}"
mkdir -p "$OUT"
PEERS="$(cd .. && pwd)/shared/peers"
echo "results in $OUT; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
npm run build >/dev/null
git rev-parse --short HEAD > "$OUT/commit.txt"
{ lscpu; node --version; date -Is; } > "$OUT/machine.txt"

# kernel micro-benchmarks: threads 1 and 2, plain and relaxed SIMD
node bench/run.mjs --kernels --threads 1,2 --isa simd,relaxed --json "$OUT/kernels.json" | tee "$OUT/kernels.log"
# end-to-end, threads 2 and (decode 256² only) threads 1
node bench/run.mjs --workloads decode_32,decode_64,encode_256 --threads 2 --isa relaxed,simd --json "$OUT/e2e.json" | tee "$OUT/e2e.log"
node bench/run.mjs --workloads decode_32 --threads 1 --isa relaxed,simd --json "$OUT/e2e-t1.json" | tee "$OUT/e2e-t1.log"
# Winograd tiles' float32 rounding (a model: no kernels run)
node bench/winograd-tiles.mjs | tee "$OUT/winograd-tiles.log"
# exact tiling vs untiled
node bench/exact-tiling.mjs --size 512 --threads 2 --json "$OUT/exact512.json" | tee "$OUT/exact512.log"
[ -n "${SKIP_1024:-}" ] || node bench/exact-tiling.mjs --size 1024 --threads 2 --json "$OUT/exact1024.json" | tee "$OUT/exact1024.log"
# the peers' harness with our adapter (plain and relaxed SIMD) next to onnxruntime-node/-web and PyTorch
node bench/check-peer-adapter.mjs --threads 2 | tee "$OUT/check-peer-adapter.log"
mkdir -p "$OUT/peers"
echo '{"decode_32": {"gflop": 622.2}, "decode_64": {"gflop": 2514.5}, "encode_256": {"gflop": 272.7}}' > "$OUT/peers/flops.json"
EXTRA_PEERS="mod:$PWD/bench/peer-adapter.mjs,mod:$PWD/bench/peer-adapter-relaxed.mjs" WORKLOADS="${WORKLOADS:-decode_32,decode_64,encode_256}" \
  THREADS="${THREADS:-1,2}" RESULTS_DIR="$OUT/peers" "$PEERS/run.sh" | tee "$OUT/peers.log"
# WebGPU: decode 512² and 1024² on a hardware adapter (skipped, with a note, where there is none)
node bench/run.mjs --backend webgpu --json "$OUT/webgpu.json" | tee "$OUT/webgpu.log"
echo "done: $OUT (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
