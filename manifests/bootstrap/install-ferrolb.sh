#!/usr/bin/env bash
# Installs FerroLB (kubectl apply -k) and, with POOL_RANGE set, an address pool announced
# on the LAN. Idempotent: applying again changes nothing.
#   POOL_RANGE=192.0.2.240-192.0.2.250 ./install-ferrolb.sh [--dry-run]
# KUBECONFIG is honoured; K3s' kubeconfig is used when it exists.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { sed -n '2,5p' "$0"; }
parse_common "$@"

if [ -z "${KUBECONFIG:-}" ] && [ -r /etc/rancher/k3s/k3s.yaml ]; then
  export KUBECONFIG=/etc/rancher/k3s/k3s.yaml
fi
log "installing FerroLB from $MANIFESTS"
run kubectl apply -k "$MANIFESTS"
run kubectl -n metallb-system rollout status deployment/ferrolb-controller --timeout=180s
run kubectl -n metallb-system rollout status daemonset/ferrolb-speaker --timeout=180s
if [ -n "${POOL_RANGE:-}" ]; then
  [[ "$POOL_RANGE" =~ ^[0-9a-fA-F.:/-]+$ ]] || die "POOL_RANGE=$POOL_RANGE is not an address range or CIDR"
  log "address pool $POOL_RANGE"
  pool=$(sed "s#198.51.100.240-198.51.100.250#$POOL_RANGE#" "$MANIFESTS/examples/pool.yaml")
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '+ kubectl apply -f - <<EOF\n%s\nEOF\n' "$pool"
  else
    printf '%s\n' "$pool" | kubectl apply -f -
  fi
else
  log "no POOL_RANGE: create an IPAddressPool and an L2Advertisement (see $MANIFESTS/examples/pool.yaml)"
fi
