#!/usr/bin/env bash
# kubeadm control plane: node prerequisites, kubeadm init, a CNI, kube-proxy's strictARP
# when it runs in IPVS mode (else every node answers ARP for LoadBalancer addresses), then
# FerroLB.
#   [POD_CIDR=10.244.0.0/16] [CNI_MANIFEST=<flannel URL>] [POOL_RANGE=...] ./kubeadm-control-plane.sh [--dry-run]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$HERE/kubeadm-node.sh"
usage() { sed -n '2,5p' "$0"; }
parse_common "$@"
POD_CIDR=${POD_CIDR:-10.244.0.0/16}
CNI_MANIFEST=${CNI_MANIFEST:-https://github.com/flannel-io/flannel/releases/latest/download/kube-flannel.yml}

# The API, etcd, kubelet, scheduler and controller-manager, flannel VXLAN.
open_ports 6443/tcp 2379:2380/tcp 10250/tcp 10257/tcp 10259/tcp 8472/udp "${FERROLB_PORTS[@]}"
trust_cidrs "$POD_CIDR" 10.96.0.0/12
prepare_node
if [ -f "$FERROLB_ROOT/etc/kubernetes/admin.conf" ]; then
  log "already initialised (/etc/kubernetes/admin.conf exists); kubeadm init skipped"
else
  run kubeadm init --pod-network-cidr="$POD_CIDR"
fi
export KUBECONFIG=/etc/kubernetes/admin.conf
run kubectl apply -f "$CNI_MANIFEST"
log "kube-proxy: strictARP when in IPVS mode"
if [ "$DRY_RUN" -eq 1 ]; then
  printf '+ kubectl -n kube-system get configmap kube-proxy -o yaml | sed "s/strictARP: false/strictARP: true/" | kubectl apply -f -  (if mode is ipvs)\n'
else
  proxy=$(kubectl -n kube-system get configmap kube-proxy -o yaml)
  if grep -qE '^\s*mode: "?ipvs"?' <<<"$proxy"; then
    printf '%s\n' "${proxy//strictARP: false/strictARP: true}" | kubectl apply -f -
    kubectl -n kube-system rollout restart daemonset/kube-proxy
  fi
fi
log "workers join with: $(if [ "$DRY_RUN" -eq 1 ]; then echo '<kubeadm token create --print-join-command>'; else kubeadm token create --print-join-command; fi)"
"$HERE/install-ferrolb.sh" "$@"
