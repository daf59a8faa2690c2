#!/usr/bin/env bash
# Installs azure-vnet and azure-vnet-ipam (and vnetctl) plus the default
# conflist, the way the original's install-cni-plugin.sh does.
#
#   install-cni-plugin.sh [version] [--bin-dir D] [--conf-dir D] [--app-dir D] [--conflist FILE] [--no-shim]
#
# Defaults: --bin-dir /opt/cni/bin, --conf-dir /etc/cni/net.d, --app-dir /opt/vnet-cni.
# The built tree (dist/, bin/, native addon, BPF objects, runtime node_modules)
# is copied to <app-dir>/<version>. azure-vnet and azure-vnet-ipam in <bin-dir>
# are symlinks to the native shim (<app-dir>/current/dist/shim, built by
# npm run build:shim), which hands calls to the node daemon when the conflist
# names its socket and otherwise runs the Node plugin; without a built shim (no
# C compiler) or with --no-shim they are small scripts that exec node, as
# before. vnetctl is always such a script. Replacing a version is one atomic
# symlink flip of <app-dir>/current.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
version="" bin_dir=/opt/cni/bin conf_dir=/etc/cni/net.d app_dir=/opt/vnet-cni conflist="$src/docker/10-azure.conflist" shim=1
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --conf-dir) conf_dir="$2"; shift 2 ;;
    --app-dir) app_dir="$2"; shift 2 ;;
    --conflist) conflist="$2"; shift 2 ;;
    --no-shim) shim=0; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "install-cni-plugin.sh: unknown option $1" >&2; exit 2 ;;
    *) version="$1"; shift ;;
  esac
done
built="$(node -p "require('$src/package.json').version")"
version="${version:-v$built}"
if [ "${version#v}" != "$built" ]; then
  echo "install-cni-plugin.sh: this tree builds v$built, not $version" >&2
  exit 1
fi
[ -f "$src/dist/control/plugin/azure-vnet.js" ] || { echo "install-cni-plugin.sh: not built; run npm run build first" >&2; exit 1; }
node_bin="$(command -v node)"

dest="$app_dir/$version"
tmp="$dest.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp"
# Only what a node runs: no dist/lab, dist/test or dist/bench.
mkdir -p "$tmp/dist"
for d in cni control native bundle shim; do if [ -e "$src/dist/$d" ]; then cp -a "$src/dist/$d" "$tmp/dist/"; fi; done
cp -a "$src/package.json" "$tmp/"
# The Node launchers: the shim's fallback runs <root>/bin/<plugin>.
mkdir -p "$tmp/bin"
cp -a "$src/bin/azure-vnet" "$src/bin/azure-vnet-ipam" "$tmp/bin/"
mkdir -p "$tmp/native/build/Release" "$tmp/bpf"
cp -a "$src/native/build/Release/vnet_native.node" "$tmp/native/build/Release/"
cp -a "$src"/bpf/*.o "$tmp/bpf/" 2>/dev/null || true
# Runtime dependencies only.
(cd "$src" && npm ls --omit=dev --parseable --all 2>/dev/null | tail -n +2) | while read -r dir; do
  rel="${dir#"$src"/}"
  # npm's layout is flat: copying top-level packages brings nested ones along.
  [[ "$rel" =~ ^node_modules/(@[^/]+/)?[^/]+$ ]] || continue
  mkdir -p "$tmp/$(dirname "$rel")"; cp -a "$dir" "$tmp/$rel"
done
rm -rf "$dest"; mv "$tmp" "$dest"
ln -sfn "$version" "$app_dir/current.tmp" && mv -T "$app_dir/current.tmp" "$app_dir/current"

mkdir -p "$bin_dir" "$conf_dir"
[ -x "$dest/dist/shim/cni-shim" ] || shim=0
for b in azure-vnet azure-vnet-ipam vnetctl; do
  rm -f "$bin_dir/.$b.tmp"
  if [ "$b" != vnetctl ] && [ "$shim" = 1 ]; then
    # The shim tells the plugins apart by the name it is run as, so the link keeps the plugin's name.
    ln -s "$app_dir/current/dist/shim/$b" "$bin_dir/.$b.tmp"
  else
    case "$b" in vnetctl) entry=control/cli/vnetctl.js ;; *) entry="control/plugin/$b.js" ;; esac
    printf '#!/bin/sh\nexec %s %s "$@"\n' "$node_bin" "$app_dir/current/dist/$entry" > "$bin_dir/.$b.tmp"
    chmod 0755 "$bin_dir/.$b.tmp"
  fi
  mv -T "$bin_dir/.$b.tmp" "$bin_dir/$b"
done
install -m 0644 "$conflist" "$conf_dir/.10-azure.conflist.tmp" && mv "$conf_dir/.10-azure.conflist.tmp" "$conf_dir/10-azure.conflist"
echo "installed vnet-cni $version ($([ "$shim" = 1 ] && echo 'native shim' || echo 'Node launchers')): $bin_dir/{azure-vnet,azure-vnet-ipam,vnetctl}, $conf_dir/10-azure.conflist"
