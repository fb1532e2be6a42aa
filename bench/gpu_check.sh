#!/usr/bin/env bash
# Issue 28 part B in one run on a GPU machine: every table and log goes under $OUT (the device tool's
# output folder; ./gpu_out where OUT is unset), headed by the GPU's name as torch prints it, the torch,
# CUDA and driver versions and the date.
#
#   bash bench/gpu_check.sh prepare      # HERE, where PyPI answers: the wheels the GPU machine lacks, into .whl/
#   bash bench/gpu_check.sh              # THERE: device run, command "bash bench/gpu_check.sh", carry [".whl"],
#                                        #   timeout_s 570; it ends itself within GPU_CHECK_BUDGET_S (480 s)
#   bash bench/gpu_check.sh compiled leg # only these steps (a second call while the machine is still warm)
#
# The GPU machine reaches no registry: the steps run under its own python3 and torch (whatever CUDA build
# its image has; the header records it), with the project's other dependencies carried as wheels. The
# steps, the most important first, each under its own timeout and all within the budget:
#   correctness  tests/test_cuda.py: CUDA fp32/bf16/fp16 and the engine against CPU fp32; the split on OOM
#   throughput   bench/model_throughput.py, 1024x1024, batch 1-16: fp32, bf16/fp16 channels_last, CUDA graphs
#   service      bench/gpu_load.py: served images/s, PNG and JPEG, 1 and 8 workers, against the bare model
#   training     training.train --preset paper on synthetic scenes rendered there: steps/s in stage 2
#   ddp          torchrun --nproc_per_node=1 for 20 steps with checkpoints, then --resume to 30
#   compiled     bench/model_throughput.py's torch.compile rows (max-autotune-no-cudagraphs)
#   leg          a warm-restart leg from the shipped weights in the time left; its weights come back in parts
#   container    whether this machine has a container engine with the NVIDIA runtime
# Exit status: 2 at once where no CUDA device or no dependencies are found, else 1 if a step failed.
# shellcheck disable=SC2329  # the run_* steps are called by name
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

# The project's dependencies that the GPU machine's image does not hold (/work/.library/device/KINDS.md).
CARRIED="fastapi starlette opentelemetry-api pydantic pydantic-core pydantic-settings python-dotenv typing-inspection
annotated-types annotated-doc typing-extensions uvicorn httptools python-multipart fpng simplejpeg pillow pillow-heif
pytorch-msssim"
PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/gpu_out}
SUMMARY=$OUT/summary.md
BUDGET_S=${GPU_CHECK_BUDGET_S:-480}
WORK=${GPU_CHECK_WORK:-/tmp/relight-gpu-check}
# The leg's recipe: weights v2's last leg (weights/README.md) in bf16; override once weights v3 has its own.
LEG_ARGS=${GPU_CHECK_LEG_ARGS:---preset v2 --l1_weight 0 --l2_weight 1 --ssim_weight -0.005 --lr 1.5e-4 --amp bf16}
STARTED=$SECONDS
failed=0

prepare() {
  local venv_python=${PREPARE_PYTHON:-.venv/bin/python} specs=() name wheels
  for name in $CARRIED; do
    specs+=("$name==$("$venv_python" -c "import importlib.metadata as m; print(m.version('$name'))")") || exit 1
  done
  rm -rf .whl && mkdir -p .whl
  "$venv_python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${specs[@]}" || exit 1
  git describe --always --dirty > .whl/commit.txt
  wheels=(.whl/*.whl)
  echo "${#wheels[@]} wheels, $(du -sh .whl | cut -f1), for $(cat .whl/commit.txt)"
  echo 'next, with the device tool: run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=570)'
}

fail_now() {
  echo "gpu_check: $*; nothing was measured." | tee -a "$SUMMARY"
  exit 2
}

left() { echo $((BUDGET_S - (SECONDS - STARTED))); }

# step NAME CAP_S COMMAND...: COMMAND for at most CAP_S seconds (less where the budget has less left), its
# whole output in $WORK/logs/NAME.log, its tables and verdicts in the summary.
step() {
  local name=$1 cap=$2 limit status
  shift 2
  limit=$(left)
  ((limit > cap)) && limit=$cap
  if ((limit < 20)); then
    printf '\n## %s: skipped, %d s of the budget left\n' "$name" "$(left)" | tee -a "$SUMMARY"
    return 1
  fi
  printf '\n## %s (at most %d s): %s\n' "$name" "$limit" "$*" | tee -a "$SUMMARY"
  # timeout signals its whole process group: servers, data loaders and torchrun's workers go too.
  timeout --kill-after=15 "$limit" "$@" > "$WORK/logs/$name.log" 2>&1
  status=$?
  grep -E '^(\||# |PASSED|FAILED|SKIPPED|ERROR|CUDA |engine |cap |served:|step [0-9]+: validation|  [A-Za-z])' \
    "$WORK/logs/$name.log" | tee -a "$SUMMARY"
  if ((status == 124)); then
    echo "($name: stopped at its $limit s limit)" | tee -a "$SUMMARY"
  elif ((status != 0)); then
    { echo "($name: exit $status; its log ends:)"; tail -15 "$WORK/logs/$name.log"; } | tee -a "$SUMMARY"
  fi
  ((status == 0)) || failed=1
  return "$status"
}

# render DIR ROUNDS TRAIN SUPERSAMPLE SECONDS: 512x512 synthetic scenes, TRAIN pairs and one validation pair a
# data root, for at most SECONDS: one process a core (training.synth renders on one), each writing up to ROUNDS
# roots. Prints the finished roots, comma-separated; a root cut off by the deadline is left out.
render() {
  local dir=$1 rounds=$2 train=$3 supersample=$4 deadline=$((SECONDS + $5)) i
  for ((i = 0; i < $(nproc); i++)); do
    (
      for ((k = 0; k < rounds && SECONDS < deadline; k++)); do
        root=$dir/r$i-$k
        [ -f "$root/meta.json" ] && continue
        rm -rf "$root"
        # One core in four renders generator v1, about the shipped weights' mix (300 v2 and 100 v1 pairs).
        timeout $((deadline - SECONDS)) "$PY" -m training.synth --out "$root" --version $((i % 4 == 3 ? 1 : 2)) \
          --train "$train" --val 1 --size 512 --seed $((1000 + 100 * i + k)) --supersample "$supersample" \
          > /dev/null 2>&1 || break
      done
    ) &
  done
  wait
  find "$dir" -mindepth 2 -maxdepth 2 -name meta.json -printf '%h\n' 2> /dev/null | sort -V | paste -sd,
}

# The rate of a training log's last progress-bar update, in steps per second (tqdm smooths it over recent steps).
steps_per_s() {
  tr '\r' '\n' < "$1" | grep -oE '[0-9.]+(it/s|s/it)' | tail -1 | awk '/s\/it/ {print 1 / $1; next} {print $1 + 0}'
}

run_correctness() {
  step correctness 150 "$PY" -m pytest tests/test_cuda.py -v -s -rA -p no:cacheprovider
}

run_throughput() {
  step throughput 170 "$PY" bench/model_throughput.py --sizes 1024 --batches 1,2,4,8,16 \
    --variants fp32,bf16-cl,fp16-cl,bf16-cl-graphed
}

run_service() {
  step service 170 "$PY" bench/gpu_load.py --workers 1,8 --formats png,jpeg --duration 8
}

run_training() {
  local data rate
  data=$(render "$WORK/data" 1 2 1 60)
  [ -n "$data" ] || { echo "(training: no scenes rendered in 60 s)" | tee -a "$SUMMARY"; return 1; }
  step training 150 "$PY" -m training.train --preset paper --data "$data" --out "$WORK/runs/paper" \
    --max_steps 300 --stage2_step 100 --perceptual_weight 0 --num_workers 4 --eval_images 1 --no-resume
  rate=$(steps_per_s "$WORK/logs/training.log")
  [ -n "$rate" ] || return 1
  echo "$rate" > "$WORK/steps_per_s"
  awk -v r="$rate" 'BEGIN {printf "steps/s at 512x512, batch 2, stage 2 without the perceptual term: %.1f; " \
    "the paper'"'"'s 375,000 steps at that rate: %.0f min\n", r, 375000 / r / 60}' | tee -a "$SUMMARY"
}

run_ddp() {
  local data run=$WORK/runs/ddp
  data=$(render "$WORK/data" 1 2 1 60)
  [ -n "$data" ] || { echo "(ddp: no scenes rendered in 60 s)" | tee -a "$SUMMARY"; return 1; }
  rm -rf "$run"
  local train=("$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m training.train --preset paper
    --data "$data" --out "$run" --checkpoint_every 10 --perceptual_weight 0 --eval_images 1)
  step ddp 60 "${train[@]}" --max_steps 20 || return 1
  step ddp-resume 60 "${train[@]}" --max_steps 30 --resume || return 1
  echo "resumed: train_log.jsonl ends at $(tail -1 "$run/train_log.jsonl")" | tee -a "$SUMMARY"
}

run_compiled() {
  step compiled 200 "$PY" bench/model_throughput.py --sizes 1024 --batches 8,16,4,1,2 --variants fp32,bf16-cl-compiled
}

run_leg() {
  local data rate steps parts
  # A third of what is left renders scenes as the weights' own were (supersampled), the rest trains.
  data=$(render "$WORK/leg-data" 1000 2 2 $(($(left) / 3)))
  [ -n "$data" ] || { echo "(leg: no scenes rendered)" | tee -a "$SUMMARY"; return 1; }
  rate=$(cat "$WORK/steps_per_s" 2> /dev/null || echo 10)
  # Start-up and the final evaluation of every root take about a minute; the rest is steps.
  steps=$(awk -v r="$rate" -v s="$(left)" 'BEGIN {n = int(r * (s - 75) * 0.8); print (n > 0 ? n : 0)}')
  if ((steps < 100)); then
    printf '\n## leg: skipped, %d s of the budget left\n' "$(left)" | tee -a "$SUMMARY"
    return 0
  fi
  # shellcheck disable=SC2086  # LEG_ARGS is a list of arguments
  step leg "$(left)" "$PY" -m training.train $LEG_ARGS --data "$data" --out "$WORK/runs/leg" \
    --init_weights weights/stacked_dmshn.safetensors --max_steps "$steps" --eval_every "$steps" \
    --eval_images 0 --checkpoint_every "$steps" --num_workers 4 --no-resume
  [ -f "$WORK/runs/leg/best.safetensors" ] || return 1
  # At most 16 MiB a file comes back: join them with `cat leg_best.safetensors.part-* > best.safetensors`.
  split -b 15M "$WORK/runs/leg/best.safetensors" "$OUT/leg_best.safetensors.part-"
  parts=("$OUT"/leg_best.safetensors.part-*)
  echo "leg: $steps steps on $(tr ',' '\n' <<< "$data" | wc -l) data roots; its weights in ${#parts[@]} parts" \
    | tee -a "$SUMMARY"
}

run_container() {
  {
    printf '\n## container\n'
    if command -v docker > /dev/null; then
      echo "- docker: $(docker info --format '{{.ServerVersion}}, runtimes {{.Runtimes}}' 2>&1 | head -1)"
    else
      echo "- docker: not installed"
    fi
    echo "- NVIDIA Container Toolkit: $(nvidia-ctk --version 2>&1 | head -1)"
    echo "- the image cannot be built here (no registry) nor brought along (5.3 GB; 64 MiB travel)"
  } | tee -a "$SUMMARY"
}

if [ "${1:-}" = prepare ]; then
  prepare
  exit
fi

mkdir -p "$OUT" "$WORK/logs"
: > "$SUMMARY"
exec > >(tee "$OUT/gpu_check.log") 2>&1
# Let tee write the log's last lines before the call returns.
tee_pid=$!
trap 'exec >&- 2>&-; wait "$tee_pid"' EXIT
steps=("$@")
((${#steps[@]})) || steps=(correctness throughput service training ddp compiled leg container)
for name in "${steps[@]}"; do
  declare -F "run_$name" > /dev/null || fail_now "no step $name (steps: $(declare -F | grep -o 'run_.*' | cut -c5- | xargs))"
done

# Before anything else: a CUDA device, seen by the python that runs every step.
"$PY" -c 'import torch' 2> /dev/null || fail_now "$PY cannot import torch"
why=$("$PY" -c 'import torch
if not torch.cuda.is_available():
    print(f"no CUDA device: torch {torch.__version__} (CUDA build {torch.version.cuda}) sees none")' 2>&1)
smi=$(command -v nvidia-smi > /dev/null && nvidia-smi -L 2>&1 | head -1 || echo "not installed")
[ -z "$why" ] || fail_now "$why; nvidia-smi: $smi"

if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
    || fail_now "the carried wheels did not install"
  export PYTHONPATH=$WORK/site:$PWD
else
  export PYTHONPATH=$PWD
fi
missing=$("$PY" -c 'import service.serve, training.train, bench.gpu_load' 2>&1 | tail -1)
[ -z "$missing" ] || fail_now "the project does not import ($missing): run 'bash bench/gpu_check.sh prepare' where PyPI answers, and carry .whl"
export PYTHONUNBUFFERED=1

{
  echo "# relight GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  "$PY" -c 'import platform, torch
memory = torch.cuda.get_device_properties(0).total_memory / 2**30
print(f"- device: {torch.cuda.get_device_name()} ({memory:.0f} GiB)")
print(f"- torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"Python {platform.python_version()}")'
  echo "- driver: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>&1 | head -1)"
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores"
  echo "- code: $(git describe --always --dirty 2> /dev/null || cat .whl/commit.txt 2> /dev/null || echo unknown)"
} | tee -a "$SUMMARY"

for name in "${steps[@]}"; do
  "run_$name" || true
done
find "$WORK" \( -path "$WORK/logs/*" -o -path "$WORK/runs/*/train_log.jsonl" \) -printf '%P\n' \
  | tar -czf "$OUT/logs.tar.gz" -C "$WORK" -T -
printf '\n%d s in all; every step log in logs.tar.gz\n' $((SECONDS - STARTED)) | tee -a "$SUMMARY"
exit "$failed"
