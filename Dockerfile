# syntax=docker/dockerfile:1
# opencompute-exporters: one image, every exporter. The subcommand picks the exporter:
#   docker run --rm -p 9927:9927 --gpus all opencompute-exporters miner
#   docker run --rm -p 9928:9928 -v /path/to/validator:/run/opencompute-computedb:ro opencompute-exporters validator
#   docker run --rm -p 9929:9929 -e WANDB_API_KEY opencompute-exporters network
# Configuration: flags after the subcommand, or OPENCOMPUTE_* environment variables.
#
# GPUs: NVML (libnvidia-ml.so) is NOT in the image. It comes from the host driver, injected by the
# NVIDIA Container Toolkit (`--gpus all`, or Kubernetes' nvidia runtime class), which reads
# NVIDIA_DRIVER_CAPABILITIES: "utility" is all NVML needs (no CUDA libraries are mounted).

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: a self-contained virtual environment ---------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/opencompute
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporters ./exporters
COPY dashboards ./dashboards
COPY alerts ./alerts
RUN /opt/opencompute/bin/pip install . \
 && /opt/opencompute/bin/opencompute-exporter --version

# --- runtime: the venv, a non-root user, nothing else ------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric uid/gid: Kubernetes can only enforce runAsNonRoot for a numeric USER.
RUN groupadd --system --gid 10001 opencompute \
 && useradd --system --uid 10001 --gid opencompute --home-dir /var/lib/opencompute \
      --shell /usr/sbin/nologin opencompute \
 && install -d -o opencompute -g opencompute -m 0750 /var/lib/opencompute
COPY --from=builder /opt/opencompute /opt/opencompute
ENV PATH=/opt/opencompute/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/opencompute \
    WANDB_DIR=/var/lib/opencompute \
    NVIDIA_DRIVER_CAPABILITIES=utility
WORKDIR /var/lib/opencompute
# Our own SQLite files (publish outbox, run ids, state store): keep them across container restarts.
VOLUME ["/var/lib/opencompute"]
USER 10001:10001
EXPOSE 9927 9928 9929
ENTRYPOINT ["opencompute-exporter"]
CMD ["--help"]
