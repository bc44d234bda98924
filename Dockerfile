# The API image serves with ONNX Runtime only: no torch (the worker image adds the extra).
FROM python:3.11-slim AS api
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install --no-cache-dir .
COPY model_store ./model_store
COPY migrations ./migrations
EXPOSE 8000
CMD ["python", "-m", "service", "serve", "--host", "0.0.0.0", "--port", "8000"]

# The training image: torch from the CPU index (swap for a CUDA build on GPU machines).
FROM api AS worker
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir ".[worker]"
CMD ["python", "-m", "service", "worker"]
