#!/usr/bin/env bash
# Installs what vnet-cni needs to build, test and run its lab on Debian 12,
# then builds it. Idempotent: skips apt when every package is present and npm
# when node_modules matches the lockfile. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool iptables ebtables ipset nftables iproute2 iputils-ping
      iperf3 tcpdump socat conntrack util-linux procps golang-go golang-github-appc-cni-dev
      containernetworking-plugins podman runc busybox-static make gcc g++ python3 ca-certificates
      docker.io containerd)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# docker.io and containerd must not run engines in the machine's netns: the lab
# runs its own inside VMs. A policy-rc.d that exits 101 keeps the packages from
# starting them; with systemd, stop and disable whatever they enabled.
if [ -d /run/systemd/system ]; then
  for unit in docker.socket docker containerd; do
    if systemctl is-active -q "$unit" || systemctl is-enabled -q "$unit" 2>/dev/null; then
      echo "==> stopping and disabling $unit (the lab runs its own)"
      systemctl disable --now "$unit"
    fi
  done
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "==> npm ci"
  npm ci --no-audit --no-fund
fi

echo "==> build"
npm run build --silent
bash scripts/build-cniclient.sh >/dev/null
