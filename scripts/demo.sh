#!/usr/bin/env bash
# FerroLB demo (run as root): a "node" network namespace runs the standalone speaker on
# its embedded default configuration, and a "client" namespace on the same LAN resolves
# and pings the LoadBalancer addresses with the kernel's own ARP and NDP. Everything is
# removed on exit. Documentation addresses only (198.51.100.0/24, 2001:db8::/32).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo.sh needs root (network namespaces): sudo $0" >&2; exit 1; }
# On a fresh machine, bring the kernel's own clients the demo uses.
packages=(iproute2 arping ndisc6 iputils-ping curl procps)
missing=0
for tool in ip arping ndisc6 ping curl sysctl; do command -v "$tool" >/dev/null || missing=1; done
if [ "$missing" -eq 1 ]; then
  command -v apt-get >/dev/null || { echo "install: ${packages[*]}" >&2; exit 1; }
  echo "== installing ${packages[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

echo "== building the speaker"
cargo build --release -q -p ferrolb-speaker
bin=target/release/ferrolb-speaker

node=flb-demo-node-$$ client=flb-demo-client-$$
cleanup() {
  ip netns pids "$node" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$node" 2>/dev/null || true
  ip netns del "$client" 2>/dev/null || true
}
trap cleanup EXIT

echo "== a node and a client on one LAN"
ip netns add "$node"; ip netns add "$client"
ip link add demo-node netns "$node" type veth peer name demo-client netns "$client"
ip -n "$node" link set lo up; ip -n "$client" link set lo up
ip -n "$node" link set demo-node address 02:fe:00:00:00:01 up
ip -n "$client" link set demo-client up
ip -n "$node" addr add 198.51.100.2/24 dev demo-node
ip -n "$node" addr add 2001:db8:100::2/64 dev demo-node nodad
ip -n "$client" addr add 198.51.100.1/24 dev demo-client
ip -n "$client" addr add 2001:db8:100::1/64 dev demo-client nodad
# What kube-proxy does on a real node: accept the VIPs' traffic locally without the
# kernel answering ARP for them (strictARP). Only FerroLB answers.
ip netns exec "$node" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
for vip in 198.51.100.10/32 198.51.100.11/32 2001:db8:100::10/128; do ip -n "$node" addr add "$vip" dev lo nodad; done

echo "== before FerroLB runs, nobody answers for 198.51.100.10"
ip netns exec "$client" arping -c 1 -w 1 -I demo-client 198.51.100.10 | grep -E "bytes from|Timeout" || true

echo "== starting the speaker on its embedded default configuration"
ip netns exec "$node" "$bin" standalone --node-name demo-node --metrics-bind 127.0.0.1:7472 2>&1 | sed 's/^/   speaker | /' &
for _ in $(seq 50); do ip netns exec "$node" curl -sf 127.0.0.1:7472/readyz >/dev/null && break; sleep 0.1; done

echo "== the client resolves and reaches the LoadBalancer addresses"
for vip in 198.51.100.10 198.51.100.11; do
  ip netns exec "$client" arping -c 2 -I demo-client "$vip" | grep "bytes from"
  ip netns exec "$client" ping -c 1 -W 2 "$vip" | grep "bytes from"
done
ip netns exec "$client" ndisc6 -1 2001:db8:100::10 demo-client | grep -i "link-layer"
ip netns exec "$client" ping -6 -c 1 -W 2 2001:db8:100::10 | grep "bytes from"
echo "== a pool address without a Service is not answered"
ip netns exec "$client" arping -c 1 -w 1 -I demo-client 198.51.100.12 | grep -E "bytes from|Timeout" || true
echo "== the client's neighbor table"
ip -n "$client" neigh show dev demo-client
echo "== metrics (MetalLB names)"
ip netns exec "$node" curl -s 127.0.0.1:7472/metrics | grep -E '^metallb_' | sort
echo "== done; cleaning up"
