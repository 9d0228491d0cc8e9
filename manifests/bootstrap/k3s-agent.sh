#!/usr/bin/env bash
# K3s agent joining a server made by k3s-server.sh.
#   K3S_URL=https://192.0.2.10:6443 K3S_TOKEN=... ./k3s-agent.sh [--dry-run]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { sed -n '2,3p' "$0"; }
parse_common "$@"
need K3S_URL "the server's API, e.g. https://192.0.2.10:6443"
need K3S_TOKEN "the server's /var/lib/rancher/k3s/server/node-token"
[[ "$K3S_URL" == https://* ]] || die "K3S_URL=$K3S_URL must start with https://"

open_ports 10250/tcp 8472/udp "${FERROLB_PORTS[@]}"
trust_cidrs 10.42.0.0/16 10.43.0.0/16
if command -v k3s >/dev/null && systemctl is-active --quiet k3s-agent; then
  log "K3s agent already running; not reinstalled"
else
  log "installing K3s agent for $K3S_URL"
  run sh -c "curl -sfL https://get.k3s.io | K3S_URL='$K3S_URL' K3S_TOKEN='$K3S_TOKEN' INSTALL_K3S_VERSION='${K3S_VERSION:-}' sh -s - agent"
fi
