#!/usr/bin/env bash
# Runs a container on the VNet with azure-vnet, like the original's
# docker-run.sh: the container starts with no network, then azure-vnet ADDs
# its netns with the pod's namespace/name recorded in CNI_ARGS.
#
#   docker-run.sh <name> <namespace> <image> [command...]
#   DOCKER=podman docker-run.sh ...        (any docker-compatible CLI)
#   docker-run.sh --rm <name> <namespace>  (DEL, then remove the container)
#
# What the DEL needs (container id, the plugin config of the ADD, CNI_PATH) is
# kept in $DOCKER_RUN_STATE/<name>/ when the container starts, so --rm works
# after the container is gone (`docker rm -f`, an engine restart).
# Env: CNI_PATH (default /opt/cni/bin), CNI_CONF (default /etc/cni/net.d/10-azure.conflist),
# DOCKER (default docker), DOCKER_RUN_ARGS (extra `run` flags, word-split),
# DOCKER_RUN_STATE (default /run/vnet-cni/docker-run).
# Prints the container's IP address on success.
set -euo pipefail
docker=${DOCKER:-docker}
export CNI_PATH=${CNI_PATH:-/opt/cni/bin}
conf=${CNI_CONF:-/etc/cni/net.d/10-azure.conflist}
state_root=${DOCKER_RUN_STATE:-/run/vnet-cni/docker-run}

usage() { sed -n '2,16p' "$0" >&2; exit 2; }

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

cni() { # cni COMMAND CONTAINERID NETNS NAMESPACE NAME PLUGINCONF
  local bin
  bin=$(plugin_bin)
  CNI_COMMAND=$1 CNI_CONTAINERID=$2 CNI_NETNS=$3 CNI_IFNAME=eth0 \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=$4;K8S_POD_NAME=$5" \
    "$bin" <<<"$6"
}

if [ "${1:-}" = "--rm" ]; then
  [ $# -eq 3 ] || usage
  name=$2 namespace=$3 state="$state_root/$2"
  if [ -f "$state/id" ]; then
    # Recorded at start: works whether or not the container still exists.
    id=$(cat "$state/id") stdin=$(cat "$state/config.json") CNI_PATH=$(cat "$state/cni_path")
  else
    # Started by an older docker-run.sh: only a live container can tell.
    id=$($docker inspect -f '{{.Id}}' "$name") stdin=$(plugin_conf)
  fi
  # The netns path only while the very container runs: a /proc/PID path of a
  # dead one may name another process's netns now. DEL needs none (CNI spec).
  netns=""
  pid=$($docker inspect -f '{{.Id}} {{.State.Pid}}' "$name" 2>/dev/null || true)
  [ "${pid%% *}" = "$id" ] && [ "${pid#* }" != "0" ] && netns=/proc/${pid#* }/ns/net
  cni DEL "$id" "$netns" "$namespace" "$name" "$stdin" >/dev/null
  $docker rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$state"
  exit 0
fi

[ $# -ge 3 ] || usage
name=$1 namespace=$2 image=$3
shift 3
# shellcheck disable=SC2086
id=$($docker run -d --network none --name "$name" ${DOCKER_RUN_ARGS:-} "$image" "$@")
pid=$($docker inspect -f '{{.State.Pid}}' "$id")
stdin=$(plugin_conf)
state="$state_root/$name"
# A record under this name is a container that died without --rm (docker just
# let us reuse its name): release its endpoint now with what it recorded.
if [ -f "$state/id" ]; then
  CNI_PATH=$(cat "$state/cni_path") cni DEL "$(cat "$state/id")" "" "$namespace" "$name" "$(cat "$state/config.json")" >/dev/null 2>&1 || true
fi
# Remember what the DEL needs before the ADD, so even a crash between the two leaves a way to undo it.
mkdir -p "$state_root"; rm -rf "$state.tmp.$$"; mkdir "$state.tmp.$$"
printf '%s' "$id" >"$state.tmp.$$/id"; printf '%s' "$stdin" >"$state.tmp.$$/config.json"; printf '%s' "$CNI_PATH" >"$state.tmp.$$/cni_path"
rm -rf "$state"; mv -T "$state.tmp.$$" "$state"
if ! result=$(cni ADD "$id" "/proc/$pid/ns/net" "$namespace" "$name" "$stdin"); then
  echo "$result" >&2
  cni DEL "$id" "" "$namespace" "$name" "$stdin" >/dev/null 2>&1 || true
  $docker rm -f "$id" >/dev/null
  rm -rf "$state"
  exit 1
fi
node -e 'const r = JSON.parse(process.argv[1]); console.log(r.ips[0].address.split("/")[0])' "$result"
