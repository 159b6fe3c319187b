# SRPO Studio: one CUDA image for the studio (app), the maintenance loop and the GPU workers.
# Build: docker build -t srpo-studio .   Run: docker compose up (see docker-compose.yml).
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    SRPO_DATA_DIR=/srv/data \
    SRPO_STORAGE_DIR=/srv/storage \
    HF_HOME=/srv/cache/huggingface

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev \
        build-essential ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv $VIRTUAL_ENV \
    && pip install --upgrade pip

RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin srpo \
    && mkdir -p /srv/data /srv/storage /srv/cache \
    && chown -R srpo:srpo /srv

WORKDIR /opt/srpo
COPY pyproject.toml README.md alembic.ini ./
COPY srpo ./srpo
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
COPY static ./static
RUN pip install -e . && chown -R srpo:srpo /opt/srpo

USER srpo
EXPOSE 7860
VOLUME ["/srv/data", "/srv/storage"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:7860/healthz', timeout=4).status != 200)"

CMD ["srpo", "studio", "--host", "0.0.0.0", "--port", "7860"]
