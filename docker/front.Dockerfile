# syntax=docker/dockerfile:1
# The front door (ingress/front.py): GET /, /api/health/, the merged OpenAPI with /docs and
# /redoc and their assets, the favicon. Build from the repository root:
#   docker build -f docker/front.Dockerfile -t registry.example.com/coding-platform/front:1.0.0 .
# It holds no function: the build imports every function once to bake the merged OpenAPI
# document into /app/openapi.json (OPENAPI_FILE), and the runtime carries shared/, ingress/,
# that document and the four files of the docs pages.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# ---- the docs pages' JavaScript and CSS, exactly as the lockfile pins them ----------------
FROM ${NODE_IMAGE} AS docs-ui
WORKDIR /docs_ui
COPY ingress/docs_ui/package.json ingress/docs_ui/package-lock.json ./
RUN SCARF_ANALYTICS=false npm ci --ignore-scripts --omit=peer --no-audit --no-fund

# ---- build: dependencies, the baked document, the sources into /app -----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt
COPY shared ./shared
COPY functions ./functions
COPY ingress ./ingress
COPY piccolo_conf.py ./
RUN mkdir -p /app \
 && python -m ingress.openapi /app/openapi.json \
 && cp -r shared ingress piccolo_conf.py /app/ \
 && rm -rf /app/ingress/docs_ui/node_modules \
 && find /app -name '__pycache__' -prune -exec rm -rf {} + \
 && python -m compileall -q /app
COPY --from=docs-ui /docs_ui/node_modules/swagger-ui-dist/package.json /docs_ui/node_modules/swagger-ui-dist/swagger-ui.css /docs_ui/node_modules/swagger-ui-dist/swagger-ui-bundle.js /app/ingress/docs_ui/node_modules/swagger-ui-dist/
COPY --from=docs-ui /docs_ui/node_modules/redoc/package.json /app/ingress/docs_ui/node_modules/redoc/
COPY --from=docs-ui /docs_ui/node_modules/redoc/bundles/redoc.standalone.js /app/ingress/docs_ui/node_modules/redoc/bundles/
RUN test -f /app/shared/uvicorn-logging.json || (echo "shared/uvicorn-logging.json is missing" >&2; exit 1)
# Proof that the front door starts from the baked document without any function.
RUN cd /app && OPENAPI_FILE=/app/openapi.json python -c "import sys, ingress.front as f; f.front_document(f.app); assert not [m for m in sys.modules if m.startswith('functions')]"

# ---- runtime ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --gid 1000 app \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UVICORN_APP=ingress.front:app \
    OPENAPI_FILE=/app/openapi.json \
    HOME=/tmp
WORKDIR /app
USER 1000:1000
EXPOSE 8000
CMD ["sh", "-c", "exec uvicorn --host 0.0.0.0 --port 8000 --no-proxy-headers --ws-max-size 1048576 --ws-per-message-deflate false --log-config /app/shared/uvicorn-logging.json --timeout-graceful-shutdown 20"]
