# syntax=docker/dockerfile:1
# One image per function, from one file. Build from the repository root:
#   docker build -f docker/function.Dockerfile --build-arg FUNCTION=users \
#     -t registry.example.com/coding-platform/users:1.0.0 .
# FUNCTION is one of: users, sessions, workspace, reviews, terminal. The image holds that
# function and the shared package, nothing else: no other function, no ingress layer.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: dependencies into a virtualenv, the sources into /app -------------------------
FROM ${PYTHON_IMAGE} AS build
ARG FUNCTION
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN test -n "${FUNCTION}" || (echo "build with --build-arg FUNCTION=<name>" >&2; exit 1)
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (from pyproject.toml only), so a source change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt
COPY shared ./shared
COPY functions ./functions
COPY piccolo_conf.py ./
RUN test -f "functions/${FUNCTION}/app.py" || (echo "no functions/${FUNCTION}/app.py" >&2; exit 1) \
 && mkdir -p /app/functions \
 && cp -r shared piccolo_conf.py /app/ \
 && cp functions/__init__.py /app/functions/ \
 && cp -r "functions/${FUNCTION}" /app/functions/ \
 && find /app -name '__pycache__' -prune -exec rm -rf {} + \
 && python -m compileall -q /app
# The log configuration the command below names (uvicorn logs no query string with it).
RUN test -f /app/shared/uvicorn-logging.json || (echo "shared/uvicorn-logging.json is missing" >&2; exit 1)
# Proof that the function runs from its own code and shared/ alone (nothing else is in /app).
RUN cd /app && python -c "import functions.${FUNCTION}.app"

# ---- runtime: no compilers, no pip cache, not root ----------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG FUNCTION
RUN groupadd --gid 1000 app \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
# Sources stay owned by root: the app cannot rewrite its own code (the pod also mounts / read-only).
COPY --from=build /app /app
# UVICORN_APP names the app uvicorn serves, so the Kubernetes manifests run any function
# image with the same command.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UVICORN_APP=functions.${FUNCTION}.app:app \
    HOME=/tmp
WORKDIR /app
USER 1000:1000
EXPOSE 8000
# The Kubernetes manifests pass the same command explicitly; this default serves `docker run`.
# X-Forwarded-For counts only from TRUSTED_PROXIES (nobody unless set).
CMD ["sh", "-c", "exec uvicorn --host 0.0.0.0 --port 8000 --no-proxy-headers --ws-max-size 1048576 --ws-per-message-deflate false --log-config /app/shared/uvicorn-logging.json --timeout-graceful-shutdown 20"]
