#!/usr/bin/env bash
# Runs a container on the VNet with azure-vnet, like the original's
# docker-run.sh: the container starts with no network, then azure-vnet ADDs
# its netns with the pod's namespace/name recorded in CNI_ARGS.
#
#   docker-run.sh <name> <namespace> <image> [command...]
#   DOCKER=podman docker-run.sh ...        (any docker-compatible CLI)
#   docker-run.sh --rm <name> <namespace>  (DEL, then remove the container)
#
# Env: CNI_PATH (default /opt/cni/bin), CNI_CONF (default /etc/cni/net.d/10-azure.conflist),
# DOCKER (default docker), DOCKER_RUN_ARGS (extra `run` flags, word-split).
# Prints the container's IP address on success.
set -euo pipefail
docker=${DOCKER:-docker}
export CNI_PATH=${CNI_PATH:-/opt/cni/bin}
conf=${CNI_CONF:-/etc/cni/net.d/10-azure.conflist}

usage() { sed -n '2,12p' "$0" >&2; exit 2; }

# The azure-vnet entry of the conflist, with the list's name and cniVersion, as libcni passes it.
plugin_conf() {
  node -e '
    const list = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const entry = (list.plugins || [list]).find((p) => p.type === "azure-vnet");
    if (!entry) { console.error("no azure-vnet plugin in " + process.argv[1]); process.exit(1); }
    process.stdout.write(JSON.stringify({ cniVersion: list.cniVersion, name: list.name, ...entry }));
  ' "$conf"
}

# azure-vnet from the first CNI_PATH directory that has it (CNI_PATH is a list).
plugin_bin() {
  local IFS=: dir
  for dir in $CNI_PATH; do
    [ -x "$dir/azure-vnet" ] && { echo "$dir/azure-vnet"; return 0; }
  done
  echo "azure-vnet not found in CNI_PATH=$CNI_PATH" >&2
  return 1
}

cni() { # cni COMMAND CONTAINERID NETNS NAMESPACE NAME
  local bin stdin
  bin=$(plugin_bin)
  stdin=$(plugin_conf)
  CNI_COMMAND=$1 CNI_CONTAINERID=$2 CNI_NETNS=$3 CNI_IFNAME=eth0 \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=$4;K8S_POD_NAME=$5" \
    "$bin" <<<"$stdin"
}

if [ "${1:-}" = "--rm" ]; then
  [ $# -eq 3 ] || usage
  name=$2 namespace=$3
  id=$($docker inspect -f '{{.Id}}' "$name")
  pid=$($docker inspect -f '{{.State.Pid}}' "$name")
  netns=""; [ "$pid" != "0" ] && netns=/proc/$pid/ns/net
  cni DEL "$id" "$netns" "$namespace" "$name" >/dev/null
  $docker rm -f "$name" >/dev/null
  exit 0
fi

[ $# -ge 3 ] || usage
name=$1 namespace=$2 image=$3
shift 3
# shellcheck disable=SC2086
id=$($docker run -d --network none --name "$name" ${DOCKER_RUN_ARGS:-} "$image" "$@")
pid=$($docker inspect -f '{{.State.Pid}}' "$id")
if ! result=$(cni ADD "$id" "/proc/$pid/ns/net" "$namespace" "$name"); then
  echo "$result" >&2
  $docker rm -f "$id" >/dev/null
  exit 1
fi
node -e 'const r = JSON.parse(process.argv[1]); console.log(r.ips[0].address.split("/")[0])' "$result"
