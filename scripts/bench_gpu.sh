#!/usr/bin/env bash
# The GPU figures of BENCHMARKS.md in one run of a few minutes (twice fits in 15 minutes of GPU time):
#   1. a training step (bench_train.py) at 128 and 256 px: fp32, channels_last, bf16, bf16 + channels_last, and
#      the defaults with the encoder and generator under torch.compile, the variants taking their steps in turn;
#   2. inference images/s at 256 px, batch 1 and 64 (bench_translate.py: fp32, bf16 + channels_last, compiled);
#   3. a FAISS index query on the GPU (bench_search.py: exact and IVF-SQ8 over 100k 256-d vectors).
#
#   bash scripts/bench_gpu.sh                      # on a CUDA machine; logs in bench_gpu_logs/
#   bash scripts/bench_gpu.sh --device cpu --train-res 8 --infer-res 16 --batches "1 2" --faiss-size 2000 \
#       --faiss-dim 32 --steps 1 --max-channels 8 --train-batch 2   # the same path on the CPU, tiny (the test)
#
# Every part runs even when an earlier one failed; the script exits 1 if any did, naming it.
set -u
cd "$(dirname "$0")/.."

device=cuda
train_res="128 256"
infer_res=256
batches="1 64"
faiss_size=100000
faiss_dim=256
steps=5
max_channels=256
train_batch=8
out=bench_gpu_logs
threads=2
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2 ;;
    --train-res) train_res=$2 ;;
    --infer-res) infer_res=$2 ;;
    --batches) batches=$2 ;;
    --faiss-size) faiss_size=$2 ;;
    --faiss-dim) faiss_dim=$2 ;;
    --steps) steps=$2 ;;
    --max-channels) max_channels=$2 ;;
    --train-batch) train_batch=$2 ;;
    --threads) threads=$2 ;;
    --out) out=$2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "bench_gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift 2
done
case "$device" in
  cuda) faiss_device=gpu ;;
  cpu) faiss_device=cpu ;;
  *) echo "bench_gpu.sh: --device must be cuda or cpu, got $device" >&2; exit 2 ;;
esac
if [ "$device" = cuda ] && ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "bench_gpu.sh: torch sees no CUDA device here; run it on a GPU machine or with --device cpu" >&2
  exit 2
fi
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
failed=()

part() {  # part NAME COMMAND...: run, log to $out/NAME.log, remember a failure
  local name=$1; shift
  echo "== $name: $*"
  local start=$SECONDS
  if "$@" 2>&1 | tee "$out/$name.log"; [ "${PIPESTATUS[0]}" -ne 0 ]; then
    failed+=("$name")
  fi
  echo "== $name: $((SECONDS - start)) s"
}

python -c "import torch; print('torch', torch.__version__, '| device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" | tee "$out/device.log"
part train python scripts/bench_train.py --device "$device" --resolutions $train_res --max-channels "$max_channels" \
  --batch "$train_batch" --steps "$steps" --threads "$threads" \
  --set train.precision=fp32 train.channels_last=false \
  --variant "channels_last:train.channels_last=true" \
  --variant "bf16:train.precision=bf16" \
  --variant "bf16+channels_last:train.precision=bf16,train.channels_last=true" \
  --compiled-variant
part infer python scripts/bench_translate.py --device "$device" --resolutions $infer_res --batch-sizes $batches \
  --photos 0 --min-time 2 --threads "$threads"
part faiss python scripts/bench_search.py --device "$faiss_device" --sizes "$faiss_size" --dims "$faiss_dim" \
  --kinds flat ivf_sq8 --queries 200 --threads "$threads"

if [ ${#failed[@]} -gt 0 ]; then
  echo "bench_gpu.sh: failed parts: ${failed[*]} (logs in $out/)" >&2
  exit 1
fi
echo "bench_gpu.sh: all parts ran; logs in $out/"
