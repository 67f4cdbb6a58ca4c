#!/usr/bin/env bash
# Run the whole test suite. On a fresh machine it first installs what the tests need:
# the real servers that integration tests drive (Debian packages) and Python-packaged servers.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg_cmd in "curl:curl" "chromium:chromium" "prometheus:prometheus" \
  "prometheus-pushgateway:prometheus-pushgateway" "redis-server:redis-server" \
  "postgresql:pg_ctlcluster"; do
  pkg=${pkg_cmd%%:*}; cmd=${pkg_cmd##*:}
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "missing packages: ${need_apt[*]} (install them, or run as root)" >&2
    exit 3
  fi
fi

# Python-packaged servers the tests drive: moto's S3 API (it also stands in for MinIO), ChromaDB.
need_pip=()
command -v moto_server >/dev/null 2>&1 || need_pip+=("moto[server]")
command -v chroma >/dev/null 2>&1 || need_pip+=("chromadb")
if [ ${#need_pip[@]} -gt 0 ]; then
  python3 -m pip install -q --disable-pip-version-check "${need_pip[@]}"
fi

# A real Slurm (two pretend nodes on this host) for the Slurm platform's tests.
if [ "$(id -u)" = 0 ]; then
  bash scripts/slurm-up.sh
else
  echo "not root: Slurm is not started; its tests skip themselves unless a Slurm is already up" >&2
fi

cargo test --workspace --locked "$@"
