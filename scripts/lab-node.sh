#!/usr/bin/env bash
# A lab "cluster" to try operations on (docs/operations.md): a simulated VNet
# with 2 VMs, the shipped conflist of one dataplane in each VM's
# /etc/cni/net.d, the node daemon running in each VM with the DaemonSet's
# flags, and pods a, b on vm1 and c on vm2 added through libcni.
#
#   scripts/lab-node.sh up [--dataplane iptables|ebpf] [--prefix P]   (default ebpf, prefix vlops)
#   bin/vnetctl lab exec --prefix P vm1 -- bin/vnetctl debug          (look around)
#   scripts/lab-node.sh restart [--prefix P]                          (restart both daemons: the upgrade path)
#   scripts/lab-node.sh down [--prefix P]
#
# Needs root and a build (npm run build, scripts/build-cniclient.sh).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cmd="${1:-}"; shift || true
mode=ebpf prefix=vlops
while [ $# -gt 0 ]; do
  case "$1" in
    --dataplane) mode="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    *) echo "lab-node.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
vnetctl="$repo/bin/vnetctl"
vmdir() { echo "/run/vnet-cni-lab/$prefix/vms/$1"; }
in_vm() { local vm=$1; shift; "$vnetctl" lab exec --prefix "$prefix" "$vm" -- "$@"; }
cni_path="$repo/bin:/usr/lib/cni"

start_daemon() {
  local vm=$1
  # The DaemonSet's flags (docker/manifests/daemonset.yaml), NODE_NAME = the VM.
  setsid "$vnetctl" lab exec --prefix "$prefix" "$vm" -- "$vnetctl" daemon --socket /run/vnet-cni/daemon.sock --node-name "$vm" \
    --state-dir /var/lib/vnet-cni --log-file /var/log/vnet-cni-daemon.log </dev/null >"$(vmdir $vm)/run/daemon.out" 2>&1 &
  echo $! >"$(vmdir $vm)/run/daemon.pid"
  # Ready when the readiness probe's command says so.
  for _ in $(seq 60); do in_vm "$vm" "$vnetctl" status >/dev/null 2>&1 && break; sleep 0.5; done
  in_vm "$vm" "$vnetctl" status || { cat "$(vmdir $vm)/run/daemon.out" >&2; exit 1; }
}
stop_daemon() {
  local pidf; pidf="$(vmdir "$1")/run/daemon.pid"
  # setsid made the vm-exec wrapper a process group leader; the daemon is in its group.
  [ -f "$pidf" ] || return 0
  local pg; pg="$(cat "$pidf")"
  kill -TERM -- "-$pg" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 -- "-$pg" 2>/dev/null || break; sleep 0.2; done
  rm -f "$pidf"
}

case "$cmd" in
  up)
    "$vnetctl" lab up --vms 2 --pods 4 --prefix "$prefix" >/dev/null
    for vm in vm1 vm2; do
      install -m 0644 "$repo/docker/conflists/10-azure-$mode.conflist" "$(vmdir $vm)/cni/10-azure.conflist"
      start_daemon $vm
    done
    for vp in vm1:a vm1:b vm2:c; do
      vm=${vp%:*} pod=${vp#*:}
      ip netns add "$prefix-$vm-$pod"
      res="$(in_vm "$vm" env CNI_PATH="$cni_path" "$repo/test/cniclient/cniclient" add --conflist /etc/cni/net.d/10-azure.conflist \
        --cni-path "$cni_path" --cache-dir /var/lib/vnet-cni/libcni-cache --container "c-$vm-$pod" --netns "/run/netns/$prefix-$vm-$pod" \
        --ifname eth0 --args "K8S_POD_NAMESPACE=default;K8S_POD_NAME=$pod")"
      echo "$vm pod $pod: $(node -p "JSON.parse(process.argv[1]).ips[0].address" "$res") (netns /run/netns/$prefix-$vm-$pod)"
    done
    echo "lab $prefix up ($mode); try: $vnetctl lab exec --prefix $prefix vm1 -- $vnetctl debug"
    ;;
  down)
    for vm in vm1 vm2; do stop_daemon $vm; done
    sleep 1
    "$vnetctl" lab down --prefix "$prefix"
    ;;
  restart)
    # What an upgrade does to a node: the daemon stops, a new one starts (and re-installs the dataplane in place).
    for vm in vm1 vm2; do stop_daemon $vm; start_daemon $vm; done
    ;;
  *) sed -n '2,13p' "$0"; exit 2 ;;
esac
