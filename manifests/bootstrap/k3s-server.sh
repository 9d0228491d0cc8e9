#!/usr/bin/env bash
# K3s server (first node) with its built-in ServiceLB disabled (otherwise it and FerroLB
# both answer for LoadBalancer Services), the firewall opened, then FerroLB.
#   [POOL_RANGE=...] [K3S_VERSION=v1.33.1+k3s1] ./k3s-server.sh [--dry-run]
# Agents then join with K3S_URL=https://<this node>:6443 and K3S_TOKEN from
# /var/lib/rancher/k3s/server/node-token (k3s-agent.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { sed -n '2,6p' "$0"; }
parse_common "$@"

# The API, kubelet, flannel VXLAN, and K3s' pod and Service networks.
open_ports 6443/tcp 10250/tcp 8472/udp "${FERROLB_PORTS[@]}"
trust_cidrs 10.42.0.0/16 10.43.0.0/16
if command -v k3s >/dev/null && systemctl is-active --quiet k3s; then
  log "K3s server already running; not reinstalled"
  if ! grep -q "servicelb" "$FERROLB_ROOT/etc/rancher/k3s/config.yaml" 2>/dev/null; then
    log "warning: K3s' ServiceLB may be enabled: add 'disable: [servicelb]' to /etc/rancher/k3s/config.yaml and restart k3s"
  fi
else
  write_file /etc/rancher/k3s/config.yaml <<'YAML'
# Written by FerroLB's k3s-server.sh: FerroLB answers for LoadBalancer Services.
disable:
  - servicelb
YAML
  log "installing K3s server"
  run sh -c "curl -sfL https://get.k3s.io | INSTALL_K3S_VERSION='${K3S_VERSION:-}' sh -s - server"
fi
"$HERE/install-ferrolb.sh" "$@"
