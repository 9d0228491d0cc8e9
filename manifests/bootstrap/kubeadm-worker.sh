#!/usr/bin/env bash
# kubeadm worker: node prerequisites, then kubeadm join.
#   JOIN_COMMAND="kubeadm join 192.0.2.10:6443 --token ... --discovery-token-ca-cert-hash sha256:..." ./kubeadm-worker.sh [--dry-run]
# (the control plane prints it: kubeadm token create --print-join-command)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$HERE/kubeadm-node.sh"
usage() { sed -n '2,4p' "$0"; }
parse_common "$@"
need JOIN_COMMAND "the control plane's 'kubeadm token create --print-join-command'"
[[ "$JOIN_COMMAND" == "kubeadm join "* ]] || die "JOIN_COMMAND must start with 'kubeadm join'"

open_ports 10250/tcp 8472/udp "${FERROLB_PORTS[@]}"
prepare_node
if [ -f "$FERROLB_ROOT/etc/kubernetes/kubelet.conf" ]; then
  log "already joined (/etc/kubernetes/kubelet.conf exists)"
else
  read -r -a join <<<"$JOIN_COMMAND"
  run "${join[@]}"
fi
