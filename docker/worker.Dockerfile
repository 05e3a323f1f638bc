# rtc-annotator worker image: CUDA 12 + cuDNN 9 runtime, torch from the PyTorch CUDA index,
# the project with every pipeline extra. Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t rtc-annotator-worker:latest .
# Model weights are NOT in the image: mount [worker] models_dir (filled with
# `rtc-annotator models fetch --to DIR` on a machine with internet) at /models.
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# PyTorch wheel index matching the CUDA runtime above (cu126). torch and torchvision come from
# here; constraints.txt pins the CPU build used on development machines and is not used here.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ARG EXTRAS=transcribe,detect,ocr

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    YOLO_OFFLINE=1 \
    YOLO_CONFIG_DIR=/tmp/ultralytics \
    RTC_ANNOTATOR_CONFIG=/etc/rtc-annotator/worker.toml

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        python3 python3-venv ffmpeg libgl1 libglib2.0-0 ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv \
 && pip install --upgrade pip

RUN pip install --index-url "${TORCH_INDEX_URL}" torch torchvision

WORKDIR /src
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY rtc_annotator ./rtc_annotator
COPY signaling ./signaling
RUN pip install ".[${EXTRAS}]" && rm -rf /src

RUN useradd --create-home --uid 1000 annot \
 && mkdir -p /etc/rtc-annotator /models /cache \
 && chown annot /cache
USER annot
WORKDIR /home/annot
VOLUME ["/cache"]

# tini reaps the per-job child processes and forwards SIGTERM: the worker leaves the room,
# gives running jobs [worker] shutdown_grace_s to finish, and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--", "rtc-annotator", "worker", "--config", "/etc/rtc-annotator/worker.toml"]
