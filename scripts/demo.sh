#!/usr/bin/env bash
# FerroLB demo (run as root), in two acts, on the speaker's embedded default configuration.
# 1. A "node" network namespace runs the standalone speaker, and a "client" namespace on
#    the same LAN resolves and pings the LoadBalancer addresses with the kernel's own ARP
#    and NDP.
# 2. Three nodes form a cluster and share the addresses; the owner of one loses its link
#    while the client pings it every 10 ms, and another node takes over.
# Everything is removed on exit. Documentation addresses only (198.51.100.0/24, 2001:db8::/32).
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

node=flb-demo-node-$$ client=flb-demo-client-$$ switch=flb-demo-switch-$$
members=(flb-demo-n0-$$ flb-demo-n1-$$ flb-demo-n2-$$)
key=$(mktemp)
cleanup() {
  disown -a 2>/dev/null || true  # no "Killed" job notices for the speakers stopped here
  for ns in "$node" "${members[@]}"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  done
  for ns in "$node" "$client" "$switch" "${members[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -f "$key"
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

echo
echo "== act 2: three nodes share the addresses"
ip netns pids "$node" | xargs -r kill
ip netns del "$node"; ip netns del "$client"
ip netns add "$switch"; ip netns add "$client"
ip -n "$switch" link add br0 type bridge; ip -n "$switch" link set br0 up
ip -n "$client" link set lo up
ip netns exec "$client" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
ip link add demo-client netns "$client" type veth peer name port-client netns "$switch"
ip -n "$switch" link set port-client master br0 up
ip -n "$client" link set demo-client up
ip -n "$client" addr add 198.51.100.1/24 dev demo-client
ip -n "$client" addr add 2001:db8:100::1/64 dev demo-client nodad
head -c 32 /dev/urandom | base64 > "$key"
for i in 0 1 2; do
  ns=${members[$i]}
  ip netns add "$ns"; ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
    net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
  ip link add eth0 netns "$ns" type veth peer name "port$i" netns "$switch"
  ip -n "$switch" link set "port$i" master br0 up
  ip -n "$ns" link set eth0 address "02:fe:00:00:00:0$((i + 1))" up
  ip -n "$ns" addr add "198.51.100.$((i + 2))/24" dev eth0
  ip -n "$ns" addr add "2001:db8:100::$((i + 2))/64" dev eth0 nodad
  ip -n "$ns" addr add 198.51.100.10/32 dev lo; ip -n "$ns" addr add 198.51.100.11/32 dev lo
  ip -n "$ns" addr add 2001:db8:100::10/128 dev lo nodad
  ip netns exec "$ns" "$bin" --log-level warn standalone --node-name "node-$i" --metrics-bind 127.0.0.1:7472 \
    --gratuitous-interval-ms 200 --cluster-bind "198.51.100.$((i + 2)):7946" --cluster-join 198.51.100.2:7946 \
    --cluster-key-file "$key" 2>&1 | sed "s/^/   node-$i | /" &
done
owner_of() { # prints the index of the node announcing $1
  for i in 0 1 2; do
    if ip netns exec "${members[$i]}" curl -sf 127.0.0.1:7472/metrics | grep -q "^metallb_speaker_announced{ip=\"$1\""; then
      echo "$i"; return
    fi
  done
}
for _ in $(seq 100); do
  settled=$(ip netns exec "${members[0]}" curl -sf 127.0.0.1:7472/metrics | awk '/^ferrolb_cluster_members\{state="settled"\}/ {print $2}')
  [ "${settled:-0}" = 3 ] && [ -n "$(owner_of 198.51.100.10)" ] && break
  sleep 0.1
done
echo "== who answers for what (one owner per address, spread over the nodes)"
for vip in 198.51.100.10 198.51.100.11 2001:db8:100::10; do echo "   $vip -> node-$(owner_of "$vip")"; done
victim=$(owner_of 198.51.100.10)
ip netns exec "$client" ping -c 1 -W 2 198.51.100.10 | grep "bytes from"
echo "== the client's entry: $(ip -n "$client" neigh show 198.51.100.10 dev demo-client)"
sleep 1.1 # the kernel ignores a new neighbor address within a second of the last change
echo "== pinging 198.51.100.10 every 10 ms; after half a second node-$victim fails (its cable pulled: switch port down)"
ip netns exec "$client" ping -n -i 0.01 -c 200 -W 1 198.51.100.10 >"$key.ping" &
pinger=$!
sleep 0.5
ip -n "$switch" link set "port$victim" down
wait "$pinger" || true
echo "== now 198.51.100.10 -> node-$(owner_of 198.51.100.10)"
echo "== the client's entry: $(ip -n "$client" neigh show 198.51.100.10 dev demo-client)"
received=$(grep -oE '[0-9]+ received' "$key.ping" | grep -oE '[0-9]+')
echo "== $((200 - received)) of 200 pings lost: about $(((200 - received) * 10)) ms without service"
rm -f "$key.ping"
echo "== done; cleaning up"
