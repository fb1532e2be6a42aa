# relight: the inference service on an NVIDIA GPU (nvidia-docker / NVIDIA Container Toolkit).
# One container serves one GPU with one uvicorn worker; scale out with replicas.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    RELIGHT_HOST=0.0.0.0 \
    RELIGHT_PORT=8000 \
    RELIGHT_WEIGHTS=/app/weights/stacked_dmshn.safetensors

WORKDIR /app

# Dependencies first: a code change does not reinstall them. torch is the base image's.
COPY deploy/requirements-serve.txt /app/deploy/requirements-serve.txt
RUN pip install --no-cache-dir -r /app/deploy/requirements-serve.txt

# The serving code and the shipped weights; no training/, no tests, no data.
COPY pyproject.toml README.md /app/
COPY model /app/model
COPY service /app/service
COPY weights /app/weights
RUN pip install --no-cache-dir --no-deps /app \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin relight

USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["relight-serve"]
