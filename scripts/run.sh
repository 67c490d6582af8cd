#!/usr/bin/env bash
# Runs the whole system on this machine: the control plane with its embedded defaults and
# its web dashboard, and a WireGuard node inside the same process (`clawn-server
# --with-node`). Builds the dashboard (npm) and installs nftables (exit NAT and client
# isolation) if it is missing. Extra arguments go to clawn-server,
# e.g. `bash scripts/run.sh --listen 0.0.0.0:8080 --node-endpoint 198.51.100.7:51820`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "error: the all-in-one node creates a network interface and firewall rules: run as root" >&2
  exit 2
fi
if ! command -v nft >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing nftables"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables >/dev/null
fi
# clawn-server embeds the dashboard at compile time: build it first (npm ci only when the
# lock file changed since the last install).
if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm is needed to build the web dashboard (install Node.js 20+ with npm)" >&2
  exit 2
fi
if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  echo "==> installing the dashboard's packages (npm ci)"
  (cd web && npm ci --no-audit --no-fund)
fi
echo "==> building the dashboard"
(cd web && npm run build)
exec cargo run --release --locked --bin clawn-server -- --with-node "$@"
