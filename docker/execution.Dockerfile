# syntax=docker/dockerfile:1
# The execution image: what a user's terminal runs in (one pod exec-<session-id> per session).
# Its one process is the environment agent (shared/agent/, stdlib only), which the platform reaches
# on port 7681 of the pod: it owns the shells and does the file sync.
# Build from the repository root:
#   docker build -f docker/execution.Dockerfile -t registry.example.com/coding-platform/execution:1.0.0 .
FROM debian:bookworm-slim
# bash for the terminal, python3 (3.11: the agent and the user's code), the usual tools.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      bash coreutils tar findutils procps ca-certificates less \
      python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 1000 runner \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /workspace --shell /bin/bash runner \
 && mkdir -p /workspace \
 && chown 1000:1000 /workspace
# Interactive shells also find what `pip install --user` puts in /tmp/.local/bin. Only the
# user's shells read this file: the agent and everything the platform runs use absolute paths
# and the PATH below, which holds no directory the user can write.
RUN printf '\n# the user'"'"'s own tools (pip install --user)\nPATH="/tmp/.local/bin:$PATH"\n' \
      >> /etc/bash.bashrc
# Only the agent: shared/ here is a namespace package holding nothing else.
COPY shared/agent/ /opt/cep-agent/shared/agent/
# The root filesystem is read-only in the pod; only /workspace (synced to PostgreSQL) and /tmp
# are writable. pip's user site and caches live in /tmp, so installed packages are not synced
# back as workspace files. PIP_BREAK_SYSTEM_PACKAGES allows `pip install --user` on Debian.
ENV PATH=/usr/local/bin:/usr/bin:/bin \
    PYTHONPATH=/opt/cep-agent \
    HOME=/workspace \
    PYTHONUSERBASE=/tmp/.local \
    PIP_USER=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_CACHE_DIR=/tmp/.cache/pip \
    LANG=C.UTF-8 \
    TERM=xterm-256color \
    PYTHONUNBUFFERED=1
WORKDIR /workspace
USER 1000:1000
EXPOSE 7681
# The pod spec the platform creates gives the same command with its settings, and the secret
# in CEP_AGENT_SECRET (which the agent removes from its environment before any shell starts).
# -P: the working directory (/workspace) is never on the agent's import path.
CMD ["/usr/bin/python3", "-S", "-B", "-P", "-m", "shared.agent", "--listen", "0.0.0.0:7681", \
     "--secret-env", "CEP_AGENT_SECRET", "--workspace", "/workspace", "--prespawn"]
