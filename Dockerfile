# The tracker's processes (ingest, relay, projections) for docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what the package needs: no .venv, run/ or data/ from the build context.
# README.m[d] is optional here (pyproject names it as the readme, so one is made).
COPY pyproject.toml README.m[d] ./
RUN test -f README.md || echo "# mappa-tracker" > README.md
COPY domain ./domain
COPY projections ./projections
COPY consumers ./consumers
COPY infra ./infra
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app mappa \
    && mkdir -p /app/data && chown mappa /app/data

USER mappa
ENV MAPPA_DATA_DIR=/app/data
# docker-compose.yml gives each service its command (mappa run ...).
CMD ["mappa", "--help"]
