#!/usr/bin/env bash
# What every kubeadm node needs: kernel modules and sysctls, swap off, containerd with
# the systemd cgroup driver, kubeadm/kubelet/kubectl. Sourced by kubeadm-control-plane.sh
# and kubeadm-worker.sh. KUBERNETES_MINOR (default v1.33) picks the pkgs.k8s.io channel.

prepare_node() {
  log "kernel modules and sysctls"
  write_file /etc/modules-load.d/k8s.conf <<'CONF'
overlay
br_netfilter
CONF
  run modprobe overlay
  run modprobe br_netfilter
  write_file /etc/sysctl.d/99-kubernetes.conf <<'CONF'
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
CONF
  run sysctl --system
  log "swap off (kubelet refuses to start with swap)"
  run swapoff -a
  if [ -f "$FERROLB_ROOT/etc/fstab" ] && grep -qE '^[^#].*\sswap\s' "$FERROLB_ROOT/etc/fstab"; then
    run sed -i -E 's/^([^#].*\sswap\s.*)$/# \1/' "$FERROLB_ROOT/etc/fstab"
  fi
  if ! command -v containerd >/dev/null; then
    run apt-get update
    run apt-get install -y containerd
  fi
  log "containerd with the systemd cgroup driver"
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '+ containerd config default (SystemdCgroup = true) > %s\n' "$FERROLB_ROOT/etc/containerd/config.toml"
  else
    containerd config default | sed 's/SystemdCgroup = false/SystemdCgroup = true/' | write_file /etc/containerd/config.toml
  fi
  run systemctl restart containerd
  if ! command -v kubeadm >/dev/null; then
    local minor=${KUBERNETES_MINOR:-v1.33}
    log "kubeadm, kubelet and kubectl $minor from pkgs.k8s.io"
    run apt-get install -y apt-transport-https ca-certificates curl gpg
    run sh -c "curl -fsSL https://pkgs.k8s.io/core:/stable:/$minor/deb/Release.key | gpg --dearmor -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg"
    echo "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/$minor/deb/ /" |
      write_file /etc/apt/sources.list.d/kubernetes.list
    run apt-get update
    run apt-get install -y kubelet kubeadm kubectl
    run apt-mark hold kubelet kubeadm kubectl
  fi
  run systemctl enable --now kubelet
}
