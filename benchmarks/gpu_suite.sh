#!/usr/bin/env bash
# Every GPU figure of BENCHMARKS.md in one run, each part under its own time limit, logs under $OUT and
# the JSON figures in $OUT/results.tgz (rewritten after every part, so a cut-off run keeps what it measured).
#   OUT=gpu-results DEADLINE=420 bash benchmarks/gpu_suite.sh [syncs] [trace] [swin] [bench] [compile]   (default: all but trace)
# syncs: tests/methods/test_host_syncs.py (no host sync in any tiny preset's step; find_host_syncs.py lists them);
# trace: find_host_syncs.py $TRACE --stacks, then --error (each sync's whole stack; the first sync's traceback);
# swin: masked SwinBEVT vs torchvision swin3d_t (issue 14);
# bench: `vidssl bench` of one full preset per method, eager; compile: the same with trainer.compile=true.
# BENCH_ARGS go to both (e.g. --no-plain: the plain fp32 step and FLOPs were measured already, BENCHMARKS.md).
#
# What the fourth GPU session should run (the rows still missing after the third, BENCHMARKS.md), in two calls:
#   1. DEADLINE=540 PRESET_LIMIT=75 BENCH_ARGS="--no-plain --no-largest-batch" bash benchmarks/gpu_suite.sh bench
#      (eager step again, the corrected loader figure and end to end for every method: BaSSL now reads keyframes)
#   2. DEADLINE=250 PRESET_LIMIT=120 BENCH_ARGS=--no-plain BENCH="fgkvmem_kvmem_r3d18_k400:64
#      gdt_basecase_r2plus1d18_k400:32" bash benchmarks/gpu_suite.sh compile   (then the other methods' compile)
set -u
OUT=${OUT:-gpu-results}
DEADLINE=${DEADLINE:-3600}   # seconds: no part or preset is started after this
JSON=${JSON_DIR:-/tmp/vidssl-gpu-json}
mkdir -p "$OUT" "$JSON"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
parts=${*:-syncs swin bench compile}
here=$(cd "$(dirname "$0")" && pwd)
# one full preset per method and a per-GPU batch (the presets' batches are global, over 8-64 GPUs)
BENCH=${BENCH:-"byol_rho2_r3d18_k400:64 fgkvmem_kvmem_r3d18_k400:64 brave_va_tsm50_k600:32 gdt_basecase_r2plus1d18_k400:32 stica_r2plus1d18_k400:32 bassl_r50_movienet:8 bevt_swinb_k400:8:method.target=pixels"}
PRESET_LIMIT=${PRESET_LIMIT:-100}   # seconds per preset
SYNC_LIMIT=${SYNC_LIMIT:-120}       # seconds for the host-sync test
SWIN_LIMIT=${SWIN_LIMIT:-180}       # seconds for the Swin comparison (eager figures first, then compiled)
TRACE=${TRACE:-bassl_tiny}          # presets whose syncs are traced (part trace)
TRACE_LIMIT=${TRACE_LIMIT:-60}      # seconds for each of the two trace runs
BENCH_ARGS=${BENCH_ARGS:-}           # e.g. --no-largest-batch
left() { echo $(( DEADLINE - SECONDS )); }
limit() { local l; l=$(left); [ "$l" -gt "$1" ] && echo "$1" || echo "$l"; }
save() { tar czf "$OUT/results.tgz" -C "$JSON" . 2>/dev/null; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, torchvision, lightning, av; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'lightning', lightning.__version__, 'av', av.__version__)"
  echo "cores $(nproc)"
  echo "NVDEC library (torchcodec CUDA): $(ls /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu 2>/dev/null | grep -i -m1 nvcuvid || echo none)"
  echo "system FFmpeg: $(command -v ffmpeg || echo none)"; } 2>&1 | tee "$OUT/env.txt"
# the embedded datasets the full presets fall back to (no Kinetics here), generated while the syncs part runs
python3 -c "
from vidssl.bench import BenchOptions, _bench_config
from vidssl.data.module import prepare_data_root
for preset in ('byol_rho2_r3d18_k400', 'bassl_r50_movienet'):
    prepare_data_root(_bench_config(preset, BenchOptions(), gpu=True).data, print)
" > "$OUT/data.log" 2>&1 &
data_pid=$!
for part in $parts; do
  case $part in bench|compile) wait $data_pid; tail -2 "$OUT/data.log" ;; esac
  [ "$(left)" -gt 20 ] || { echo "deadline: $part not started"; continue; }
  case $part in
    syncs) timeout "$(limit "$SYNC_LIMIT")" python3 -m pytest -q -p no:cacheprovider "$here/../tests/methods/test_host_syncs.py" 2>&1 \
             | grep -v -i warn | tee "$OUT/syncs.log" ;;
    trace) { timeout "$(limit "$TRACE_LIMIT")" python3 "$here/find_host_syncs.py" $TRACE --stacks
             timeout "$(limit "$TRACE_LIMIT")" python3 "$here/find_host_syncs.py" $TRACE --error; } 2>&1 \
             | tee "$OUT/trace.log" ;;
    swin) timeout "$(limit "$SWIN_LIMIT")" python3 "$here/bench_bevt_swin.py" --batch 8 --size 224 --frames 16 --steps 10 \
            --warmup 3 --compile 2>&1 | grep -v -i warn | tee "$OUT/swin.log" ;;
    bench|compile)
      for pb in $BENCH; do
        IFS=: read -r p b extra <<< "$pb"   # preset:batch[:override] (BEVT: pixel targets, no DALL-E weights here)
        [ "$(left)" -gt 30 ] || { echo "deadline: $part $p not started"; continue; }
        if [ "$part" = bench ]; then
          timeout "$(limit "$PRESET_LIMIT")" python3 -m vidssl bench "$p" --batch "$b" --steps 5 --warmup 2 $BENCH_ARGS \
            --json "$JSON/bench_$p.json" $extra
        else
          timeout "$(limit "$PRESET_LIMIT")" python3 -m vidssl bench "$p" --batch "$b" --steps 5 --warmup 3 --no-end-to-end \
            --no-largest-batch $BENCH_ARGS --json "$JSON/compile_$p.json" trainer.compile=true $extra
        fi
        echo "[$part $p: exit $?, ${SECONDS}s]"
      done 2>&1 | grep -v -i "warn" | tee "$OUT/$part.log" ;;
  esac
  save
done
save
