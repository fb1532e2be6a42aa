# relight: the inference service. One container serves one GPU (or the CPU) with one uvicorn worker;
# scale out with replicas.
#
#   docker build -t relight .                                   # GPU: PyPI's torch, CUDA 13.0 (host driver R580+)
#   docker build -t relight:cu126 --build-arg TORCH_CUDA=cu126 .  # GPU: PyTorch's CUDA 12.6 build (driver R525+)
#   docker build -t relight:cpu --build-arg FLAVOUR=cpu .       # CPU only: the CPU build, no CUDA layers
#
# A slim Python base is enough for the GPU: PyPI's torch wheels carry the CUDA runtime, cuDNN and
# NCCL as nvidia-* wheels, and the NVIDIA Container Toolkit brings the host's driver in. A CUDA
# runtime base would only add a second copy of those libraries.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# cuda | cpu
ARG FLAVOUR=cuda
# The torch the project is tested with. The CPU build comes from PyTorch's CPU index; a build
# that cannot reach it can point PIP_FIND_LINKS at a folder or URL holding the wheel.
ARG TORCH_VERSION=2.13.0
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=
# FLAVOUR=cuda only. Empty: PyPI's build (torch 2.13.0 there is CUDA 13.0: host driver R580 or newer, Turing
# and newer GPUs). A PyTorch CUDA tag such as cu126 takes that build of the same torch from TORCH_INDEX/<tag>
# instead, for hosts that cannot move to R580 (CUDA 12.6: driver R525 or newer; Maxwell to Hopper GPUs).
ARG TORCH_CUDA=
ARG TORCH_INDEX=https://download.pytorch.org/whl

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    RELIGHT_HOST=0.0.0.0 \
    RELIGHT_PORT=8000 \
    RELIGHT_WEIGHTS=/app/weights/stacked_dmshn.safetensors

# A virtual environment works the same on python:*-slim (Python in /usr/local) and on a Debian base.
# torch is pinned through TORCH_VERSION, which hadolint cannot see.
# hadolint ignore=DL3013
RUN python3 -m venv /opt/venv \
    && if [ "$FLAVOUR" = cpu ]; then \
        pip install "torch==${TORCH_VERSION}+cpu" ${TORCH_CPU_INDEX:+--extra-index-url "$TORCH_CPU_INDEX"}; \
    elif [ "$FLAVOUR" != cuda ]; then \
        echo "FLAVOUR must be cuda or cpu, not $FLAVOUR" >&2; exit 1; \
    elif [ -n "$TORCH_CUDA" ]; then \
        pip install "torch==${TORCH_VERSION}+${TORCH_CUDA}" --extra-index-url "${TORCH_INDEX}/${TORCH_CUDA}"; \
    else \
        pip install "torch==${TORCH_VERSION}"; \
    fi \
    && python -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'

WORKDIR /app
# Dependencies before the code: a code change does not reinstall them.
COPY deploy/requirements-serve.txt /app/deploy/requirements-serve.txt
RUN pip install -r /app/deploy/requirements-serve.txt

# The serving code and the shipped weights; no training/, no tests, no data (.dockerignore).
COPY pyproject.toml README.md /app/
COPY model /app/model
COPY service /app/service
COPY weights /app/weights
RUN pip install --no-deps /app \
    && rm -rf /app/model /app/service \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin relight

USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('RELIGHT_PORT', '8000') + '/healthz', timeout=4)"]
# Exec form: relight-serve is PID 1 and gets docker stop's SIGTERM itself, and drains.
CMD ["relight-serve"]
