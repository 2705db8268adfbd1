#!/usr/bin/env bash
# Network-namespace lab for the SBC end-to-end tests.
#
#   lab/netns.sh up             create namespaces carrier / sbc / gw and the veth pairs
#                               (SBC_LAB_BACKEND=dpdk: priv0/pub0 get no kernel address and
#                               the kernel takes no IP input on them; the SBC's DPDK dataplane
#                               owns them through net_af_packet vdevs, and gives the kernel its
#                               share through the exception interface sbc-pub)
#   lab/netns.sh down           remove them (idempotent)
#   lab/netns.sh exec NS CMD... run CMD inside namespace NS
#   lab/netns.sh status         show addresses of every lab namespace
#
# Topology (no default route anywhere: nothing can leave the machine):
#
#   carrier: c0  10.0.1.10/16 10.0.1.20/16 10.0.1.50/16  <-veth->  sbc: priv0 10.0.0.100/16
#   gw:      g0  203.0.113.10/24 .11 .12                 <-veth->  sbc: pub0  203.0.113.50/24
set -euo pipefail

NAMESPACES=(carrier sbc gw)

need_root() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "lab: must run as root (ip netns)" >&2
        exit 1
    fi
}

ns_exists() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"
}

lab_down() {
    local ns
    for ns in "${NAMESPACES[@]}"; do
        if ns_exists "$ns"; then
            # Kill whatever still runs inside the namespace (only lab processes live there).
            local pids
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            if [[ -n "$pids" ]]; then
                # shellcheck disable=SC2086
                kill $pids 2>/dev/null || true
                sleep 0.3
                pids=$(ip netns pids "$ns" 2>/dev/null || true)
                # shellcheck disable=SC2086
                [[ -n "$pids" ]] && kill -9 $pids 2>/dev/null || true
            fi
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
    # A veth end left in the root namespace (interrupted 'up') would block the next 'up'.
    local ifc
    for ifc in c0 priv0 g0 pub0; do
        ip link del "$ifc" 2>/dev/null || true
    done
}

offload_off() {
    local ns=$1 ifc=$2
    if command -v ethtool >/dev/null 2>&1; then
        ip netns exec "$ns" ethtool -K "$ifc" tx off >/dev/null 2>&1 || true
    fi
}

lab_up() {
    lab_down
    local ns
    for ns in "${NAMESPACES[@]}"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # IPv4 only: keeps IPv6 DAD/MLD chatter out of the veths and captures.
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true
    done

    # carrier:c0 <-> sbc:priv0 ; gw:g0 <-> sbc:pub0 (created directly inside the namespaces)
    ip link add c0 netns carrier type veth peer name priv0 netns sbc
    ip link add g0 netns gw type veth peer name pub0 netns sbc

    ip -n carrier addr add 10.0.1.10/16 dev c0
    ip -n carrier addr add 10.0.1.20/16 dev c0
    ip -n carrier addr add 10.0.1.50/16 dev c0
    if [[ ${SBC_LAB_BACKEND:-socket} != dpdk ]]; then
        ip -n sbc addr add 10.0.0.100/16 dev priv0
        ip -n sbc addr add 203.0.113.50/24 dev pub0
    else
        # net_af_packet leaves the kernel seeing every frame of priv0/pub0 as well. The
        # SBC's DPDK exception interface (sbc-pub) gives the kernel 203.0.113.50, which
        # Linux would then take on any interface and answer (UDP port unreachable for
        # SIP and RTP): IP input on priv0/pub0 is dropped, before the local table, so
        # the kernel only gets what the poll loop hands it through sbc-pub. A NIC bound
        # to vfio-pci needs none of this: the kernel never sees its frames.
        ip -n sbc rule add pref 10 iif pub0 blackhole
        ip -n sbc rule add pref 11 iif priv0 blackhole
        ip -n sbc rule add pref 100 lookup local
        ip -n sbc rule del pref 0 lookup local
    fi
    ip -n gw addr add 203.0.113.10/24 dev g0
    ip -n gw addr add 203.0.113.11/24 dev g0
    ip -n gw addr add 203.0.113.12/24 dev g0

    ip -n carrier link set c0 up
    ip -n sbc link set priv0 up
    ip -n sbc link set pub0 up
    ip -n gw link set g0 up

    offload_off carrier c0
    offload_off sbc priv0
    offload_off sbc pub0
    offload_off gw g0

    # Safety net: make sure no namespace has a default route.
    for ns in "${NAMESPACES[@]}"; do
        if ip -n "$ns" route show default | grep -q .; then
            echo "lab: unexpected default route in $ns" >&2
            lab_down
            exit 1
        fi
    done
}

lab_status() {
    local ns
    for ns in "${NAMESPACES[@]}"; do
        if ns_exists "$ns"; then
            echo "== $ns"
            ip -n "$ns" -br addr
            ip -n "$ns" route
        else
            echo "== $ns (absent)"
        fi
    done
}

cmd=${1:-}
shift || true
case "$cmd" in
    up)     need_root; lab_up ;;
    down)   need_root; lab_down ;;
    status) need_root; lab_status ;;
    exec)
        need_root
        if [[ $# -lt 2 ]]; then
            echo "usage: $0 exec NS CMD..." >&2
            exit 2
        fi
        ns=$1; shift
        exec ip netns exec "$ns" "$@"
        ;;
    *)
        echo "usage: $0 up|down|status|exec NS CMD..." >&2
        exit 2
        ;;
esac
