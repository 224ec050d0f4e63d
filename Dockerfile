# syntax=docker/dockerfile:1
# distill-guard container image. Build context: the repository root.
#
#   docker build -t distill-guard:0.1.0 .
#   docker run --rm -p 8080:8080 -e DISTILL_GUARD_UPSTREAM=http://model:8000 \
#     -e DISTILL_GUARD_REDIS=redis://redis:6379/0 \
#     -v "$PWD/policies:/etc/distill-guard:ro" distill-guard:0.1.0
#
# Settings come from DISTILL_GUARD_* environment variables, the policy from a
# mounted file (docs/deploying.md). tests/deploy/test_dockerfile.py lints this
# file with hadolint and checks that every path and command in it exists.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtualenv holding distill-guard and its dependencies ---------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
# A venv without pip or setuptools: the base image's pip installs into it, so
# the final stage gets the application and its wheels, no installer or build tool.
RUN python -m venv --without-pip /opt/venv \
    && python -m pip --python /opt/venv/bin/python install --no-cache-dir .
COPY policies/ policies/
RUN /opt/venv/bin/distill-guard policy check policies/default.yaml policies/strict.yaml \
    policies/shadow.yaml

# ---- runtime ----------------------------------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 distill-guard \
    && useradd --system --uid 10001 --gid distill-guard --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin distill-guard
COPY --from=build /opt/venv /opt/venv
# The example policies; mount your own over /etc/distill-guard (a directory
# mount, so that hot reload sees a replaced file) and point DISTILL_GUARD_POLICY at it.
COPY policies/ /etc/distill-guard/
# In a container the gateway listens on all interfaces. One worker per
# container: scale with replicas (docs/deploying.md, "Sizing").
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DISTILL_GUARD_POLICY=/etc/distill-guard/default.yaml \
    DISTILL_GUARD_HOST=0.0.0.0 \
    DISTILL_GUARD_PORT=8080 \
    DISTILL_GUARD_WORKERS=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# Liveness only (the process answers); readiness is GET /readyz. Slim images
# have no curl, so the check is Python's own urllib.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DISTILL_GUARD_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["distill-guard"]
CMD ["serve"]
