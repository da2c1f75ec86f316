#!/usr/bin/env bash
# Install the system packages the platform and its tests need when they are missing:
# bubblewrap (the local sandbox) and, for the tests, kubectl (renders the k8s manifests) and
# Chromium (the browser tests of the web IDE drive it through Playwright); as root, also the
# 'postgres' user the database fault tests run their own PostgreSQL server as.
# Run by `make run` / `make test`; installs only what is absent, and only where apt-get works.
set -euo pipefail

want=()
command -v bwrap >/dev/null 2>&1 || want+=(bubblewrap)
if [ "${1:-}" = "--test" ]; then
  command -v kubectl >/dev/null 2>&1 || want+=(kubernetes-client)
  [ -x /usr/bin/chromium ] || want+=(chromium)
  if [ "$(id -u)" -eq 0 ] && ! getent passwd postgres >/dev/null; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
fi
[ ${#want[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${want[*]} ..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
else
  echo "missing system packages: ${want[*]} (install them with your package manager)" >&2
  exit 1
fi
