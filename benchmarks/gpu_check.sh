#!/usr/bin/env bash
# The GPU check, one command on a machine with an NVIDIA GPU and this
# repository: checks that the backend's framework sees a GPU, runs the
# optimizer's correctness checks and benchmarks/step_time.py (with the
# 12.6M-parameter fit step, --large) on it, and writes all of it to one file.
#
#   benchmarks/gpu_check.sh [--backend tensorflow|jax|torch] [--python PY]
#                           [--cpu-dry-run] [--output FILE]
#
# --backend tensorflow (default): sets up the virtual environment (`make
#   install` when there is none) with TensorFlow's CUDA libraries and runs
#   the optimizer's TensorFlow tests, then the benchmark.
# --backend jax / torch: Keras on that backend, which needs no TensorFlow
#   (a machine with JAX or PyTorch for CUDA, Keras and this repository will
#   do). The correctness check is tests/backend_trajectories.py (groups
#   "fast" and "slow"), with TF32 matrix products off: it writes
#   trajectories_<group>_<backend>.npz beside the output file, which
#   tests/test_backends.py compares with TensorFlow's on any machine:
#   KERAS_LOPT_TRAJECTORIES=<that folder> pytest tests/test_backends.py -m "".
#   The benchmark's fit section runs after the fast group, its first-call
#   section last.
# --python: the interpreter (default .venv/bin/python; installs nothing
#   when given).
# --output: the results file (default benchmark_results/gpu_check.txt).
# --cpu-dry-run: the same steps on the CPU with GPUs hidden, installing
#   nothing, with small sizes (TensorFlow: tests/test_optimizer.py only and
#   the benchmark's --quick; JAX/PyTorch: the "fast" trajectories and
#   --quick): it checks that the script works (tests/test_gpu_check.py).
#
# The exit status is the first failing step's.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
backend=tensorflow
py=
output=benchmark_results/gpu_check.txt
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) dry_run=1 ;;
    --backend) backend=$2; shift ;;
    --python) py=$2; shift ;;
    --output) output=$2; shift ;;
    *) echo "gpu_check.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
case "$backend" in
  tensorflow|jax|torch) ;;
  *) echo "gpu_check.sh: --backend must be tensorflow, jax or torch; received '$backend'" >&2; exit 2 ;;
esac

if [ -z "$py" ]; then
  py=.venv/bin/python
  [ -x "$py" ] || make install
fi
export TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=$backend PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
[ "$dry_run" = 1 ] && export CUDA_VISIBLE_DEVICES="" JAX_PLATFORMS=cpu

case "$backend" in
  tensorflow)
    if [ "$dry_run" = 0 ] && [ "$py" = .venv/bin/python ]; then
      # TensorFlow's CUDA libraries, for the TensorFlow version installed.
      version=$("$py" -c "import tensorflow as tf; print(tf.__version__)")
      "$py" -m pip install --quiet "tensorflow[and-cuda]==$version"
    fi
    count_gpus="import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))" ;;
  jax) count_gpus="import jax; print(sum(d.platform == 'gpu' for d in jax.devices()))" ;;
  torch) count_gpus="import torch; print(torch.cuda.device_count())" ;;
esac
gpus=$("$py" -c "$count_gpus" 2>/dev/null || echo 0)
if [ "$dry_run" = 0 ] && [ "$gpus" -lt 1 ]; then
  echo "gpu_check.sh: $backend sees no GPU (see nvidia-smi and the CUDA libraries)" >&2
  exit 1
fi

mkdir -p "$(dirname "$output")"
{
  echo "# keras_lopt GPU check, Keras backend $backend$([ "$dry_run" = 1 ] && echo ' (CPU dry run)')"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "GPUs seen by $backend: $gpus"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  fi
} > "$output"

status=0
step() {  # step TITLE COMMAND...: runs COMMAND, its output into the file
  { echo; echo "## $1"; } >> "$output"
  shift
  "$@" 2>&1 | tee -a "$output" || { rc=$?; [ "$status" != 0 ] || status=$rc; }
}

if [ "$backend" = tensorflow ]; then
  tests=(tests/test_optimizer.py tests/test_keras_integration.py tests/test_guard.py
         tests/test_feature_sets.py tests/test_performance_guard.py
         tests/test_recurrent_architectures.py)
  bench=(--large)
  if [ "$dry_run" = 1 ]; then tests=(tests/test_optimizer.py); bench=(--quick); fi
  step "tests: ${tests[*]}" "$py" -m pytest -q -rfE "${tests[@]}"
  step "benchmarks/step_time.py ${bench[*]}" "$py" benchmarks/step_time.py "${bench[@]}"
else
  # Quickest first: the fast correctness check, the steady step, then the
  # slow trajectories and the first calls.
  groups=(fast slow)
  fit=(--large --sections fit)
  first=(--sections first-call --sizes 10,50,200 --repeats 1)
  if [ "$dry_run" = 1 ]; then groups=(fast); fit=(--quick --sections fit); first=(--quick --sections first-call); fi
  folder=$(dirname "$output")
  trajectories() {
    # Full float32 matrix products (no TF32), as on the CPU.
    step "tests/backend_trajectories.py $1 (-> $folder/trajectories_${1}_$backend.npz)" \
      env NVIDIA_TF32_OVERRIDE=0 JAX_DEFAULT_MATMUL_PRECISION=highest \
      "$py" tests/backend_trajectories.py "$1" "$folder/trajectories_${1}_$backend.npz"
  }
  trajectories "${groups[0]}"
  step "benchmarks/step_time.py --backend $backend ${fit[*]}" "$py" benchmarks/step_time.py --backend "$backend" "${fit[@]}"
  for group in "${groups[@]:1}"; do trajectories "$group"; done
  step "benchmarks/step_time.py --backend $backend ${first[*]}" "$py" benchmarks/step_time.py --backend "$backend" "${first[@]}"
fi
echo "results: $output"
exit "$status"
