# Images of the strip inspection service: `api` (ONNX Runtime only, no torch) and `worker`
# (torch, Torch-Pruning; the CUDA build by default, `--build-arg WORKER_TORCH=cpu` for machines
# without a GPU). BASE_IMAGE is any Debian-based image with Python 3.11 and venv: the default is
# pulled by name; `make base-image` builds a local stand-in from Debian's packages where no
# image registry is reachable.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# One unprivileged user owns what the processes write: var/ (spool, kept strips, job folders)
# and the model store (workers publish into it, admins move its aliases).
RUN python3 -m venv /opt/venv \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app \
    && mkdir -p /app/var/spool /app/var/images /app/var/jobs \
    && chown -R app:app /app/var
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY migrations ./migrations
# Both images carry the shipped store, so a fresh named volume mounted on it starts with the
# shipped model whichever container mounts it first.
COPY --chown=app:app model_store ./model_store
ENV MODEL_STORE=/app/model_store \
    SPOOL_DIR=/app/var/spool \
    IMAGE_DIR=/app/var/images \
    JOBS_DIR=/app/var/jobs \
    DATA_ROOT=/data

FROM base AS api
RUN pip install . \
    && rm -rf build service *.egg-info \
    && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"
USER app
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
CMD ["python", "-m", "service", "serve", "--host", "0.0.0.0", "--port", "8000"]

# The worker needs no port: it claims jobs from the database and reads and writes the store,
# the job folders and the data sets. onnxruntime-gpu (the same module as onnxruntime, built
# with the CUDA provider) replaces the CPU package; its releases can trail the CPU one's.
FROM base AS worker
ARG WORKER_TORCH=cuda
ARG TORCH_VERSION=2.13.0
# Where the CPU build of torch comes from (its wheels are not on PyPI, which serves the CUDA
# build): PyTorch's CPU index by default, or any index with the same wheel.
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
RUN set -eu; \
    case "$WORKER_TORCH" in \
        cuda) pip install "torch==${TORCH_VERSION}" ;; \
        cpu) pip install "torch==${TORCH_VERSION}+cpu" --extra-index-url "${TORCH_CPU_INDEX}" ;; \
        *) echo "WORKER_TORCH is cuda or cpu, not ${WORKER_TORCH}" >&2; exit 1 ;; \
    esac; \
    pip install ".[worker]"; \
    rm -rf build service *.egg-info; \
    if [ "$WORKER_TORCH" = cuda ]; then \
        pip uninstall --yes onnxruntime; \
        pip install "onnxruntime-gpu>=1.18"; \
        python -c "import onnxruntime, sys; sys.exit('CUDAExecutionProvider' not in onnxruntime.get_available_providers())"; \
    fi
USER app
CMD ["python", "-m", "service", "worker"]
