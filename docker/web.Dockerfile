# syntax=docker/dockerfile:1
# The web IDE: its Vite build (web/, base path /ide/) served by ingress/ide.py, the same small
# static server the local gateway mounts at /ide. Build from the repository root:
#   docker build -f docker/web.Dockerfile -t registry.example.com/coding-platform/web:1.0.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build the IDE from its lockfile -----------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web ./
RUN npm run build && test -f dist/index.html

# ---- runtime: Python's standard library and uvicorn, the server's two modules, the build ---
FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install "uvicorn>=0.30,<1" \
 && groupadd --gid 1000 app \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app
COPY ingress/__init__.py ingress/ide.py ingress/static.py /app/ingress/
COPY --from=build /web/dist /app/web/dist
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IDE_DIST_DIR=/app/web/dist \
    HOME=/tmp
WORKDIR /app
USER 1000:1000
EXPOSE 8000
CMD ["uvicorn", "ingress.ide:app", "--host", "0.0.0.0", "--port", "8000", "--no-proxy-headers", "--no-access-log"]
