# syntax=docker/dockerfile:1
# One image per function, from one file. Build from the repository root:
#   docker build -f docker/function.Dockerfile --build-arg FUNCTION=users \
#     -t registry.example.com/coding-platform/users:1.0.0 .
# FUNCTION is one of: users, sessions, workspace, reviews, terminal.
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
COPY . .
# The image carries the shared package, the route table and the functions' code (a few hundred
# KiB): the users function is the front door and documents every function in its merged OpenAPI.
# Only ${FUNCTION} runs in it.
RUN test -f "functions/${FUNCTION}/app.py" || (echo "no functions/${FUNCTION}/app.py" >&2; exit 1) \
 && cp -r shared ingress functions /app/ \
 && if [ -f piccolo_conf.py ]; then cp piccolo_conf.py /app/; fi \
 && find /app -name '__pycache__' -prune -exec rm -rf {} + \
 && python -m compileall -q /app

# ---- runtime: no compilers, no pip cache, not root ----------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG FUNCTION
RUN groupadd --gid 1000 app \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
# Sources stay owned by root: the app cannot rewrite its own code (the pod also mounts / read-only).
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FUNCTION=${FUNCTION} \
    HOME=/tmp
WORKDIR /app
USER 1000:1000
EXPOSE 8000
# The Kubernetes manifests pass the same command explicitly; this default serves `docker run`.
CMD ["sh", "-c", "exec uvicorn functions.${FUNCTION}.app:app --host 0.0.0.0 --port 8000 --proxy-headers --forwarded-allow-ips='*' --timeout-graceful-shutdown 20"]
