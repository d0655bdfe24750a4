# syntax=docker/dockerfile:1
# Image for the adoption-pulse worker and simulator (console script `pulse`).
#   docker build -t adoption-pulse .
#   docker run --rm --env-file .env adoption-pulse worker
# The build stage has a compiler in case a dependency has no wheel for the platform;
# the runtime stage only receives the finished virtual environment.

# An exact tag (patch release and Debian release); the Python dependencies are pinned by deploy/constraints.txt.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# .dockerignore keeps local state (.pulse/, .env, caches, tests) out of the context.
COPY . .
# Everything from the lock (deploy/constraints.txt, checked against pyproject.toml by the tests): the build
# tools first, then the package, built by those pinned tools (no isolated build environment).
RUN pip install -c deploy/constraints.txt pip setuptools wheel \
    && pip install --no-build-isolation -c deploy/constraints.txt . \
    && pip check \
    && pulse --version \
    && pulse --help > /dev/null


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="adoption-pulse" \
      org.opencontainers.image.description="Adoption pulse: simulators, Faust worker and ClickHouse sink" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PULSE_METRICS_PORT=6066

RUN groupadd --system --gid 10001 pulse \
    && useradd --system --uid 10001 --gid pulse --home-dir /home/pulse --create-home \
       --shell /usr/sbin/nologin pulse \
    && install -d -o pulse -g pulse /app

COPY --from=build /opt/venv /opt/venv

# Faust keeps its table/state data directory relative to the working directory,
# so the working directory must be writable by the runtime user.
WORKDIR /app
USER pulse

# 6066: worker metrics (PULSE_METRICS_PORT); 6067: simulator metrics (--metrics-port).
EXPOSE 6066 6067

ENTRYPOINT ["pulse"]
CMD ["--help"]
