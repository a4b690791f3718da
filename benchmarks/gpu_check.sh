#!/usr/bin/env bash
# The GPU check, one command on a machine with an NVIDIA GPU and this
# repository: sets up the virtual environment (`make install` when there is
# none) with TensorFlow's CUDA libraries, checks that TensorFlow sees a GPU,
# runs the optimizer's tests and benchmarks/step_time.py (with the
# 12.6M-parameter fit step, --large) on it, and writes all of it to one file.
#
#   benchmarks/gpu_check.sh [--cpu-dry-run] [--output FILE]
#
# --output: the results file (default benchmark_results/gpu_check.txt).
# --cpu-dry-run: the same steps on the CPU with GPUs hidden, installing
#   nothing, running tests/test_optimizer.py only and the benchmark's --quick
#   sizes: it checks that the script works (tests/test_gpu_check.py runs it).
#
# The exit status is the tests' (or the benchmark's, when the tests pass).
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
output=benchmark_results/gpu_check.txt
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) dry_run=1 ;;
    --output) output=$2; shift ;;
    *) echo "gpu_check.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done

py=.venv/bin/python
[ -x "$py" ] || make install
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=.
tests=(tests/test_optimizer.py tests/test_keras_integration.py tests/test_guard.py
       tests/test_feature_sets.py tests/test_performance_guard.py
       tests/test_recurrent_architectures.py)
bench=(--large)
if [ "$dry_run" = 1 ]; then
  export CUDA_VISIBLE_DEVICES=""
  tests=(tests/test_optimizer.py)
  bench=(--quick)
else
  # TensorFlow's CUDA libraries, for the TensorFlow version installed.
  version=$("$py" -c "import tensorflow as tf; print(tf.__version__)")
  "$py" -m pip install --quiet "tensorflow[and-cuda]==$version"
fi

gpus=$("$py" -c "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))" 2>/dev/null)
if [ "$dry_run" = 0 ] && [ "$gpus" -lt 1 ]; then
  echo "gpu_check.sh: TensorFlow sees no GPU (see nvidia-smi and the CUDA libraries)" >&2
  exit 1
fi

mkdir -p "$(dirname "$output")"
{
  echo "# keras_lopt GPU check$([ "$dry_run" = 1 ] && echo ' (CPU dry run)')"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "TensorFlow GPUs: $gpus"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  fi
  echo
  echo "## tests: ${tests[*]}"
} > "$output"

status=0
"$py" -m pytest -q -rfE "${tests[@]}" 2>&1 | tee -a "$output" || status=$?
{ echo; echo "## benchmarks/step_time.py ${bench[*]}"; } >> "$output"
"$py" benchmarks/step_time.py "${bench[@]}" 2>&1 | tee -a "$output" \
  || { rc=$?; [ "$status" != 0 ] || status=$rc; }
echo "results: $output"
exit "$status"
