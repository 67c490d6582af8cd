#!/usr/bin/env bash
# Runs the whole system on this machine: the control plane with its embedded defaults and
# a WireGuard node inside the same process (`clawn-server --with-node`). Installs nftables
# (exit NAT and client isolation) if it is missing. Extra arguments go to clawn-server,
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
exec cargo run --release --locked --bin clawn-server -- --with-node "$@"
