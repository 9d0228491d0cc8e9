#!/usr/bin/env bats
bats_require_minimum_version 1.5.0
# The bootstrap scripts with stubbed system commands: what they would run (--dry-run),
# what they do run and write (stubs record every call; files go under FERROLB_ROOT),
# idempotence, and errors for missing inputs.

setup() {
  BOOT="$BATS_TEST_DIRNAME/.."
  TMP=$(mktemp -d)
  export FERROLB_ROOT="$TMP/root" STUB_LOG="$TMP/calls" STDIN_DIR="$TMP/stdin"
  mkdir -p "$TMP/bin" "$FERROLB_ROOT/etc" "$STDIN_DIR"
  : >"$STUB_LOG"
  for cmd in curl sh systemctl ufw firewall-cmd kubectl modprobe sysctl swapoff apt-get apt-mark kubeadm containerd gpg; do
    cat >"$TMP/bin/$cmd" <<'STUB'
#!/usr/bin/env bash
name=$(basename "$0")
echo "$name $*" >>"$STUB_LOG"
case "$name $*" in
  "ufw status") [ "${UFW_ACTIVE:-0}" = 1 ] && echo "Status: active" || echo "Status: inactive" ;;
  "firewall-cmd --state") exit 1 ;;
  "systemctl is-active"*) [ "${SERVICE_ACTIVE:-0}" = 1 ] ;;
  "containerd config default") printf '[plugins]\n  SystemdCgroup = false\n' ;;
  "kubectl -n kube-system get configmap kube-proxy -o yaml") printf 'data:\n  config.conf: |\n    mode: "ipvs"\n    ipvs:\n      strictARP: false\n' ;;
  "kubeadm token create --print-join-command") echo "kubeadm join 192.0.2.10:6443 --token abc.def" ;;
  *"apply -f -") cat >"$STDIN_DIR/$name-apply" ;;
esac
exit 0
STUB
    chmod +x "$TMP/bin/$cmd"
  done
  export PATH="$TMP/bin:$PATH"
}

teardown() {
  rm -rf "$TMP"
}

# Calls other than read-only queries.
actions() {
  grep -vE '^(ufw status|firewall-cmd --state|systemctl is-active)' "$STUB_LOG" || true
}

@test "dry runs print every action and run none" {
  run "$BOOT/k3s-server.sh" --dry-run
  [ "$status" -eq 0 ]
  [[ "$output" == *"servicelb"* && "$output" == *"get.k3s.io"* && "$output" == *"kubectl apply -k"* ]]
  K3S_URL=https://192.0.2.10:6443 K3S_TOKEN=t run "$BOOT/k3s-agent.sh" --dry-run
  [ "$status" -eq 0 ]
  [[ "$output" == *"K3S_URL='https://192.0.2.10:6443'"* ]]
  run "$BOOT/kubeadm-control-plane.sh" --dry-run
  [ "$status" -eq 0 ]
  for want in "modprobe br_netfilter" "net.ipv4.ip_forward = 1" "swapoff -a" "SystemdCgroup = true" \
    "kubeadm init --pod-network-cidr=10.244.0.0/16" "strictARP: true" "kubectl apply -k"; do
    [[ "$output" == *"$want"* ]] || { echo "missing: $want"; false; }
  done
  JOIN_COMMAND="kubeadm join 192.0.2.10:6443 --token abc.def" run "$BOOT/kubeadm-worker.sh" --dry-run
  [ "$status" -eq 0 ]
  [[ "$output" == *"+ kubeadm join 192.0.2.10:6443 --token abc.def"* ]]
  POOL_RANGE=192.0.2.240-192.0.2.250 run "$BOOT/install-ferrolb.sh" --dry-run
  [[ "$output" == *"- 192.0.2.240-192.0.2.250"* ]]
  [ -z "$(actions)" ] || { echo "dry runs ran: $(actions)"; false; }
  [ -z "$(ls -A "$FERROLB_ROOT/etc")" ]
}

@test "missing or bad inputs are clear errors" {
  run "$BOOT/k3s-agent.sh" --dry-run
  [ "$status" -eq 2 ]
  [[ "$output" == *"K3S_URL is not set"* ]]
  K3S_URL=192.0.2.10:6443 K3S_TOKEN=t run "$BOOT/k3s-agent.sh" --dry-run
  [ "$status" -eq 2 ] && [[ "$output" == *"must start with https://"* ]]
  run "$BOOT/kubeadm-worker.sh" --dry-run
  [ "$status" -eq 2 ] && [[ "$output" == *"JOIN_COMMAND is not set"* ]]
  POOL_RANGE='x; rm -rf /' run "$BOOT/install-ferrolb.sh" --dry-run
  [ "$status" -eq 2 ] && [[ "$output" == *"not an address range"* ]]
  run "$BOOT/k3s-server.sh" --force
  [ "$status" -eq 2 ] && [[ "$output" == *"unknown argument: --force"* ]]
  [ -z "$(actions)" ]
}

@test "kubeadm control plane: modules, sysctls, swap, containerd, init, strictARP, FerroLB" {
  printf 'UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n' >"$FERROLB_ROOT/etc/fstab"
  run "$BOOT/kubeadm-control-plane.sh"
  [ "$status" -eq 0 ]
  grep -qx br_netfilter "$FERROLB_ROOT/etc/modules-load.d/k8s.conf"
  grep -qx "net.ipv4.ip_forward = 1" "$FERROLB_ROOT/etc/sysctl.d/99-kubernetes.conf"
  grep -q "SystemdCgroup = true" "$FERROLB_ROOT/etc/containerd/config.toml"
  grep -qx "# /swapfile none swap sw 0 0" "$FERROLB_ROOT/etc/fstab"
  grep -qx "kubeadm init --pod-network-cidr=10.244.0.0/16" "$STUB_LOG"
  grep -q "strictARP: true" "$STDIN_DIR/kubectl-apply"
  grep -qx "kubectl -n kube-system rollout restart daemonset/kube-proxy" "$STUB_LOG"
  grep -q "^kubectl apply -k .*manifests$" "$STUB_LOG"
}

@test "running again does not reinstall or re-initialise" {
  mkdir -p "$FERROLB_ROOT/etc/kubernetes" && touch "$FERROLB_ROOT/etc/kubernetes/admin.conf"
  run "$BOOT/kubeadm-control-plane.sh"
  [ "$status" -eq 0 ]
  # `run !`: a bare `! cmd` that is not a test's last command never fails it (SC2314).
  run ! grep -q "^kubeadm init" "$STUB_LOG"
  : >"$STUB_LOG"
  cp "$TMP/bin/kubeadm" "$TMP/bin/k3s"
  SERVICE_ACTIVE=1 run "$BOOT/k3s-server.sh"
  [ "$status" -eq 0 ]
  [[ "$output" == *"already running; not reinstalled"* ]]
  run ! grep -q "get.k3s.io" "$STUB_LOG"
  grep -q "^kubectl apply -k" "$STUB_LOG"
}

@test "an active ufw gets the API, kubelet, VXLAN and FerroLB's ports" {
  UFW_ACTIVE=1 run "$BOOT/k3s-server.sh"
  [ "$status" -eq 0 ]
  for port in 6443/tcp 10250/tcp 8472/udp 7946/tcp 7946/udp 7472/tcp; do
    grep -qx "ufw allow $port" "$STUB_LOG" || { echo "not opened: $port"; false; }
  done
  grep -qx "ufw allow from 10.42.0.0/16" "$STUB_LOG"
  grep -q "servicelb" "$FERROLB_ROOT/etc/rancher/k3s/config.yaml"
}
