#!/bin/bash
# OPMIP demo: one opmip-lma and one opmip-mag in two network namespaces joined by a veth pair
# ("core0" on both sides). The MAG's 'ctl' driver attaches the mobile on its access interface
# acc0 (a veth with nothing behind it: the attachment is commanded, not detected); the MAG
# sends a PBU, the LMA answers a PBA and both set up their ip6ip6 tunnel. After SECONDS the MAG
# detaches the mobile (deregistration PBU/PBA). A tshark capture on core0 (if tshark is
# installed) is decoded at the end. Everything started is killed by PID, the namespaces deleted.
#
#   sudo ./demo.sh [SECONDS]            (default 5; exit 0 when the registration was accepted)
#
# Needs root and a kernel with ip6_tunnel (modprobe ip6_tunnel); otherwise run it under
# kernel-lab, with this directory as the shared working directory, e.g.
#   kernel-lab run --timeout 300 --cwd "$PWD" -e OPMIP_HOME -- ./demo.sh
# (the guest sees the host's / read-only but not its /tmp: keep OPMIP_HOME out of /tmp, or below --cwd)
# Env: OPMIP  the opmip tool (default: the one that wrote this file); its 'opmip bin' is used
#      OUT    where logs and the capture go (default ./demo-out)
# The addresses below are placeholders and must match node.db.
set -uo pipefail
HERE=$(dirname "$(readlink -f "$0")")
OPMIP=${OPMIP:-/work/shared/tools/opmip/opmip}
DB=$HERE/node.db
LMA_ADDR=2001:db8:f::1        # router-nodes "lma"  ip-address (the LMAA)
MAG_ADDR=2001:db8:f::2        # router-nodes "mag1" ip-address (the MAG's Proxy-CoA)
MN_ID=mn1@example.net         # mobile-nodes id (NAI)
HOLD=${1:-5}
OUT=$(mkdir -p "${OUT:-demo-out}" && cd "${OUT:-demo-out}" && pwd) || exit 2

[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root" >&2; exit 2; }
BIN=$("$OPMIP" bin) || exit 2
[ -d /sys/module/ip6_tunnel ] || modprobe -q ip6_tunnel 2>/dev/null || {
    echo "demo.sh: no ip6_tunnel in this kernel ($(uname -r)): opmip-lma hangs on the first accepted PBU;" \
         "run this under kernel-lab" >&2; exit 2; }

NL=opmip-lma-$$ NM=opmip-mag-$$       # unique namespace names
TMP=$(mktemp -d)                      # the ctl FIFO (FIFOs do not work on 9p shares)
PIDS=() CAP=
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    ip netns del $NL 2>/dev/null; ip netns del $NM 2>/dev/null; rm -rf "$TMP"
}
trap cleanup EXIT; trap 'exit 130' INT TERM
wait_for() {  # FILE PATTERN SECONDS
    local i; for ((i = 0; i < $3 * 10; i++)); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "demo.sh: timeout waiting for '$2' in $1" >&2; return 1
}

# -- topology: LMA [core0 LMA_ADDR] ==veth== [core0 MAG_ADDR] MAG [acc0]~~[accp]
ip netns add $NL && ip netns add $NM || exit 1
ip link add o$$a type veth peer name o$$b
ip link set o$$a netns $NL; ip link set o$$b netns $NM
ip -n $NL link set o$$a name core0; ip -n $NM link set o$$b name core0
for n in $NL $NM; do
    ip -n $n link set lo up; ip -n $n link set core0 up
    ip netns exec $n sysctl -qw net.ipv6.conf.all.forwarding=1
done
ip -n $NL addr add $LMA_ADDR/64 dev core0 nodad
ip -n $NM addr add $MAG_ADDR/64 dev core0 nodad
ip -n $NM link add acc0 type veth peer name accp      # the MAG's access link
ip -n $NM link set acc0 up; ip -n $NM link set accp up

# -- capture on the LMA side (display filter 'mipv6', fields 'mip6.*' in tshark 4.0;
#    'not icmpv6' leaves out the PBUs quoted inside ICMPv6 errors)
if command -v tshark >/dev/null; then
    ip netns exec $NL tshark -q -i core0 -f ip6 -w "$OUT/core0.pcap" >"$OUT/tshark.log" 2>&1 &
    CAP=$!; PIDS+=($CAP); wait_for "$OUT/tshark.log" "Capturing on" 60
fi

# -- LMA: -i its router id, -d the node database, -t 0 (the default, 1, adds the LMAA/64 to each tunnel)
ip netns exec $NL "$BIN/opmip-lma" -i lma -d "$DB" -t 0 >"$OUT/opmip-lma.log" 2>&1 & PIDS+=($!)
wait_for "$OUT/opmip-lma.log" "LMA: Started" 30 || exit 1

# -- MAG: -e ctl FIFO: attachments are commanded through the FIFO
mkfifo "$TMP/mag.ctl"
ip netns exec $NM "$BIN/opmip-mag" -i mag1 -d "$DB" -e ctl "$TMP/mag.ctl" >"$OUT/opmip-mag.log" 2>&1 & PIDS+=($!)
wait_for "$OUT/opmip-mag.log" "MAG: Started" 30 || exit 1
ctl() { echo "> $*"; timeout 5 bash -c 'echo "$1" >"$2"' _ "$*" "$TMP/mag.ctl" || echo "demo.sh: the MAG does not read $TMP/mag.ctl" >&2; }

ctl attach $MN_ID acc0
wait_for "$OUT/opmip-mag.log" "PBA registration" 15
grep -q 'PBA registration .*status = 0\]' "$OUT/opmip-mag.log"; RC=$?     # accepted
sleep "$HOLD"
{ echo "## LMA: tunnels and routes while bound"; ip -n $NL -6 tunnel show; ip -n $NL -6 route
  echo "## MAG: tunnels, routes and rules while bound"; ip -n $NM -6 tunnel show; ip -n $NM -6 route show table all | grep -v -e '^local' -e '^multicast' -e '^anycast'; } >"$OUT/state.txt" 2>&1
ctl detach $MN_ID
wait_for "$OUT/opmip-mag.log" "PBA de-registration" 15
sleep 1

if [ -n "$CAP" ]; then
    sleep 1; kill -INT $CAP 2>/dev/null; wait $CAP 2>/dev/null
    tshark -r "$OUT/core0.pcap" -V -Y 'mipv6 and not icmpv6' >"$OUT/decode.txt" 2>/dev/null
    echo "## PBU/PBA on core0"
    tshark -r "$OUT/core0.pcap" -Y 'mipv6 and not icmpv6' -T fields -E separator='|' -E occurrence=f \
        -e frame.time_relative -e ipv6.src -e ipv6.dst -e mip6.mhtype -e mip6.bu.seqnr -e mip6.ba.seqnr \
        -e mip6.ba.status -e mip6.bu.lifetime -e mip6.ba.lifetime -e mip6.nemo.mnp.mnp -e mip6.nemo.mnp.pfl \
        -e mip6.mnid.identifier 2>/dev/null |
    awk -F'|' '{ if ($4 == 5) printf "%7.3f %s > %s PBU seq %s lifetime %ss HNP %s/%s MN-ID %s\n", $1, $2, $3, $5, $8 * 4, $10, $11, $12
                 else         printf "%7.3f %s > %s PBA seq %s status %s lifetime %ss HNP %s/%s MN-ID %s\n", $1, $2, $3, $6, $7, $9 * 4, $10, $11, $12 }'
fi
echo "## OPMIP logs"; grep -h -E '^(LMA|MAG|ctl):' "$OUT/opmip-lma.log" "$OUT/opmip-mag.log" | grep -v 'delay 0'
echo "## results in $OUT"
exit $RC
