#!/usr/bin/env bash
# A lab "cluster" to try operations on (docs/operations.md): a simulated VNet
# with 2 VMs, the shipped conflist of one dataplane in each VM's
# /etc/cni/net.d, the node daemon running in each VM with the DaemonSet's
# flags, and pods a, b on vm1 and c on vm2 added through libcni.
#
#   scripts/lab-node.sh up [--dataplane iptables|ebpf] [--prefix P] [--pods N]   (default ebpf, prefix vlops, 4 IPs per VM)
#   bin/vnetctl lab exec --prefix P vm1 -- bin/vnetctl debug          (look around)
#   scripts/lab-node.sh restart [--prefix P]                          (restart both daemons: the upgrade path)
#   scripts/lab-node.sh down [--prefix P]
#
# Needs root and a build (npm run build, scripts/build-cniclient.sh).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cmd="${1:-}"; shift || true
mode=ebpf prefix=vlops pods=4
while [ $# -gt 0 ]; do
  case "$1" in
    --dataplane) mode="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --pods) pods="$2"; shift 2 ;;
    *) echo "lab-node.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
vnetctl="$repo/bin/vnetctl"
vmdir() { echo "/run/vnet-cni-lab/$prefix/vms/$1"; }
in_vm() { local vm=$1; shift; "$vnetctl" lab exec --prefix "$prefix" "$vm" -- "$@"; }
cni_path="$repo/bin:/usr/lib/cni"

start_standin() {
  # --node-name turns on the Kubernetes integration, which needs an API server: the
  # lab's stand-in (lab/kube-standin.ts) on the VM's loopback. It exits when its
  # stdin closes, so a `tail -f /dev/null` keeps that open until `down`.
  local vm=$1 out port
  out="$(vmdir $vm)/run/standin.out"
  [ -f "$(vmdir $vm)/run/standin.pid" ] && return 0
  setsid bash -c 'tail -f /dev/null | exec "$0" lab exec --prefix "$1" "$2" -- node "$3/dist/lab/kube-standin.js" --port 0' \
    "$vnetctl" "$prefix" "$vm" "$repo" </dev/null >"$out" 2>&1 &
  echo $! >"$(vmdir $vm)/run/standin.pid"
  for _ in $(seq 100); do grep -q '^LISTENING' "$out" 2>/dev/null && break; sleep 0.2; done
  port="$(sed -n 's/^LISTENING \([0-9]*\).*/\1/p' "$out" | head -1)"
  [ -n "$port" ] || { echo "lab-node.sh: the stand-in API server did not start in $vm:" >&2; cat "$out" >&2; exit 1; }
  cat >"$(vmdir $vm)/run/kubeconfig.json" <<EOF2
{"apiVersion":"v1","kind":"Config","current-context":"standin",
 "clusters":[{"name":"standin","cluster":{"server":"http://127.0.0.1:$port","insecure-skip-tls-verify":true}}],
 "users":[{"name":"vnet-cni","user":{"token":"stand-in-accepts-anything"}}],
 "contexts":[{"name":"standin","context":{"cluster":"standin","user":"vnet-cni"}}]}
EOF2
}
stop_pgroup() {
  local pidf=$1
  # setsid made the wrapper a process group leader; what it started is in its group.
  [ -f "$pidf" ] || return 0
  local pg; pg="$(cat "$pidf")"
  kill -TERM -- "-$pg" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 -- "-$pg" 2>/dev/null || break; sleep 0.2; done
  rm -f "$pidf"
}

start_daemon() {
  local vm=$1
  start_standin "$vm"
  # The DaemonSet's flags (docker/manifests/daemonset.yaml), NODE_NAME = the VM;
  # the kubeconfig points at the stand-in (in a cluster: the pod's service account).
  setsid "$vnetctl" lab exec --prefix "$prefix" "$vm" -- "$vnetctl" daemon --socket /run/vnet-cni/daemon.sock --node-name "$vm" \
    --kubeconfig /run/vnet-cni/kubeconfig.json --state-dir /var/lib/vnet-cni --log-file /var/log/vnet-cni-daemon.log </dev/null >"$(vmdir $vm)/run/daemon.out" 2>&1 &
  echo $! >"$(vmdir $vm)/run/daemon.pid"
  # Ready when the readiness probe's command says so.
  for _ in $(seq 60); do in_vm "$vm" "$vnetctl" status >/dev/null 2>&1 && break; sleep 0.5; done
  in_vm "$vm" "$vnetctl" status || { cat "$(vmdir $vm)/run/daemon.out" >&2; exit 1; }
}
stop_daemon() { stop_pgroup "$(vmdir "$1")/run/daemon.pid"; }

case "$cmd" in
  up)
    "$vnetctl" lab up --vms 2 --pods "$pods" --prefix "$prefix" >/dev/null
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
    for vm in vm1 vm2; do stop_daemon $vm; stop_pgroup "$(vmdir $vm)/run/standin.pid"; done
    sleep 1
    "$vnetctl" lab down --prefix "$prefix"
    ;;
  restart)
    # What an upgrade does to a node: the daemon stops, a new one starts (and re-installs the dataplane in place).
    for vm in vm1 vm2; do stop_daemon $vm; start_daemon $vm; done
    ;;
  *) sed -n '2,13p' "$0"; exit 2 ;;
esac
