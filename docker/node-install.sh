#!/usr/bin/env bash
# The DaemonSet's initContainer: installs vnet-cni onto the node it runs on.
#
#   node-install.sh [--dataplane iptables|ebpf] [--bin-dir D] [--conf-dir D] [--app-dir D]
#
# Env (the DaemonSet sets them from the vnet-cni ConfigMap): VNET_DATAPLANE
# (default iptables), CNI_BIN_DIR (/opt/cni/bin), CNI_CONF_DIR (/etc/cni/net.d),
# VNET_APP_DIR (/opt/vnet-cni). Flags win over the env.
#
# The host paths are mounted at the same paths in the container, so what the
# installer writes (shims that exec <app-dir>/current/...) is valid on the host.
# The host need not have node: this copies the image's node binary to
# <app-dir>/node/bin/node first and puts it first on PATH, so the installer
# records that path. Then it runs docker/install-cni-plugin.sh with the
# conflist of the selected dataplane (docker/conflists/10-azure-<mode>.conflist);
# the installed file is always <conf-dir>/10-azure.conflist.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mode="${VNET_DATAPLANE:-iptables}"
bin_dir="${CNI_BIN_DIR:-/opt/cni/bin}" conf_dir="${CNI_CONF_DIR:-/etc/cni/net.d}" app_dir="${VNET_APP_DIR:-/opt/vnet-cni}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dataplane) mode="$2"; shift 2 ;;
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --conf-dir) conf_dir="$2"; shift 2 ;;
    --app-dir) app_dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "node-install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
conflist="$here/conflists/10-azure-$mode.conflist"
[ -f "$conflist" ] || { echo "node-install.sh: no conflist for dataplane '$mode' ($conflist); use iptables or ebpf" >&2; exit 2; }

# node for the host side: replaced by rename, so a running plugin keeps its inode.
src_node="$(command -v node)"
node_dir="$app_dir/node/bin"
mkdir -p "$node_dir"
if ! cmp -s "$src_node" "$node_dir/node"; then
  cp "$src_node" "$node_dir/.node.tmp.$$" && chmod 0755 "$node_dir/.node.tmp.$$" && mv -f "$node_dir/.node.tmp.$$" "$node_dir/node"
fi
export PATH="$node_dir:$PATH"

"$here/install-cni-plugin.sh" --bin-dir "$bin_dir" --conf-dir "$conf_dir" --app-dir "$app_dir" --conflist "$conflist"
echo "node-install: dataplane $mode, node $("$node_dir/node" -v) at $node_dir/node"
