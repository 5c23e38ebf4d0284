# Helpers for the network and vsock scenarios (busybox sh). Sourced, not a scenario.
# net_iface IF: wait up to 5 s for the interface (virtio_net probes on insmod), bring it up;
# says net.IF=present|missing, net.IF.driver, net.IF.mac.
net_iface() {
  i=0
  while [ ! -e "/sys/class/net/$1" ] && [ "$i" -lt 50 ]; do usleep 100000; i=$((i + 1)); done
  if [ ! -e "/sys/class/net/$1" ]; then
    result "net.$1=missing interfaces=$(ls /sys/class/net | tr '\n' ',')"
    return 1
  fi
  drv="$(basename "$(readlink "/sys/class/net/$1/device/driver" 2>/dev/null)")"
  result "net.$1=present net.$1.driver=${drv:-none} net.$1.mac=$(cat "/sys/class/net/$1/address")"
  ip link set lo up
  ip link set "$1" up
}
# net_dhcp IF: udhcpc (3 tries, 2 s apart); says net.dhcp=ok net.addr=A/PREFIX net.gw=G or
# net.dhcp=failed; sets $NET_ADDR and $NET_GW.
net_dhcp() {
  rm -f /tmp/dhcp.lease
  if udhcpc -i "$1" -f -q -n -t 3 -T 2 -s /scenarios/_udhcpc >/tmp/udhcpc.log 2>&1 && [ -s /tmp/dhcp.lease ]; then
    read -r NET_ADDR NET_GW </tmp/dhcp.lease
    result "net.dhcp=ok net.addr=$NET_ADDR net.gw=$NET_GW"
  else
    result "net.dhcp=failed log=$(tail -n 2 /tmp/udhcpc.log | tr ' \n' '_|')"
    return 1
  fi
}
# net_static IF ADDR/PREFIX: a static address; says net.addr.
net_static() {
  ip addr add "$2" dev "$1" && result "net.addr=$2"
}
# serve_bg KEY LISTEN-ADDR SEND-FILE: vsock-io listens on LISTEN-ADDR in the background, sends
# SEND-FILE (if not empty) to the one peer and keeps what it receives in /tmp/KEY.recv; says
# KEY=ready once listening. serve_wait KEY: waits for it, says KEY.recv.sha256 and the sizes.
serve_bg() {
  rm -f "/tmp/$1.ready"
  (vsock-io -t 120 -r "/tmp/$1.ready" listen "$2" <"$3" >"/tmp/$1.recv" 2>"/tmp/$1.err"; echo $? >"/tmp/$1.rc") &
  i=0
  while [ ! -e "/tmp/$1.ready" ] && [ "$i" -lt 100 ]; do usleep 50000; i=$((i + 1)); done
  if [ -e "/tmp/$1.ready" ]; then result "$1=ready"; else result "$1=not-listening err=$(tr ' ' _ <"/tmp/$1.err")"; return 1; fi
}
serve_wait() {
  wait
  r="$(cat "/tmp/$1.rc" 2>/dev/null)"
  result "$1.rc=${r:-none} $1.recv.sha256=$(sha256 <"/tmp/$1.recv") $1.recv.bytes=$(wc -c <"/tmp/$1.recv")"
  [ -z "$(cat "/tmp/$1.err" 2>/dev/null)" ] || echo "$1: $(cat "/tmp/$1.err")"
  [ "$r" = 0 ]
}
# send_to KEY CONNECT-ADDR MIB: MIB MiB from /dev/urandom to the peer; says KEY.sha256 (of what
# was sent) and KEY=ok|failed.
send_to() {
  head -c "$(($3 * 1048576))" /dev/urandom >"/tmp/$1.data"
  result "$1.sha256=$(sha256 <"/tmp/$1.data") $1.bytes=$(wc -c <"/tmp/$1.data")"
  t0="$(cut -d' ' -f1 /proc/uptime)"
  if vsock-io -t 30 -d connect "$2" <"/tmp/$1.data" 2>"/tmp/$1.err"; then
    result "$1=ok start=$t0 end=$(cut -d' ' -f1 /proc/uptime)"
  else
    result "$1=failed err=$(tr ' \n' '_|' <"/tmp/$1.err")"
    return 1
  fi
  rm -f "/tmp/$1.data"
}
