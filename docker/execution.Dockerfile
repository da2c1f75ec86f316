# syntax=docker/dockerfile:1
# The execution image: what a user's terminal runs in (one pod exec-<session-id> per session).
# Build from the repository root:
#   docker build -f docker/execution.Dockerfile -t registry.example.com/coding-platform/execution:1.0.0 .
FROM debian:bookworm-slim
# bash for the terminal, coreutils + tar for file sync over exec, python3 for the user's code.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      bash coreutils tar findutils procps ca-certificates less \
      python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 1000 runner \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /bin/bash runner \
 && mkdir -p /workspace \
 && chown 1000:1000 /workspace
# The root filesystem is read-only in the pod; only /workspace (synced to PostgreSQL) and /tmp
# are writable. HOME and pip's user site live in /tmp, so installed packages and caches are not
# synced back as workspace files. PIP_BREAK_SYSTEM_PACKAGES allows `pip install --user` on Debian.
ENV HOME=/tmp \
    PYTHONUSERBASE=/tmp/.local \
    PIP_USER=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_CACHE_DIR=/tmp/.cache/pip \
    PATH=/tmp/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    TERM=xterm-256color \
    PYTHONUNBUFFERED=1
WORKDIR /workspace
USER 1000:1000
# The backend execs shells into the pod; the main process only keeps it alive.
CMD ["sleep", "infinity"]
