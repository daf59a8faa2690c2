#!/usr/bin/env bash
# What CI can check of docker/Dockerfile without a container engine or base
# images: stage the runtime image's /vnet-cni tree exactly as the Dockerfile's
# `COPY --from=build` lines say (from this built tree), then run the image's
# entrypoints against it:
#   - docker/node-install.sh (the DaemonSet's initContainer) for each dataplane,
#     into a temp /opt/cni/bin, /etc/cni/net.d and /opt/vnet-cni;
#   - the installed plugins' VERSION, `vnetctl version` and `--help`, and the
#     probes' `vnetctl status` against a missing daemon (must say not ready);
#   - every package name an `apt-get install` line of the Dockerfile names
#     exists in the apt lists (`apt-cache show`).
# Needs: npm run build first; apt lists (apt-get update) for the last check.
#
#   scripts/check-image.sh [--out DIR] [MODE...]   (modes: iptables ebpf; default both)
# ends with "check-image: ok" or exits non-zero. With --out the work tree is
# kept in DIR: DIR/rootfs is the staged image, DIR/host-<mode>/opt/cni/bin
# the installed plugins (test/lab/install-upgrade.test.ts runs pods with
# them). Each mode is one full install (~100 MB copied).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dockerfile="$repo/docker/Dockerfile"
work=""
if [ "${1:-}" = "--out" ]; then work="$2"; shift 2; mkdir -p "$work"; fi
modes=("$@"); [ ${#modes[@]} -gt 0 ] || modes=(iptables ebpf)
if [ -z "$work" ]; then work="$(mktemp -d /tmp/vnet-check-image.XXXXXX)"; trap 'rm -rf "$work"' EXIT; fi
fail() { echo "check-image: FAIL: $*" >&2; exit 1; }
[ -f "$repo/dist/control/plugin/azure-vnet.js" ] || fail "not built (npm run build)"

# 1. Stage the runtime tree. WORKDIR of the last stage is where relative COPY targets land.
image_root="$(awk '/^FROM /{w=""} /^WORKDIR /{w=$2} END{print w}' "$dockerfile")"
[ -n "$image_root" ] || fail "no WORKDIR in the runtime stage"
stage="$work/rootfs$image_root"
mkdir -p "$stage"
n=0
while read -r -a words; do
  dest="${words[-1]}"; srcs=("${words[@]:2:${#words[@]}-3}")
  case "$dest" in /*) target="$work/rootfs$dest" ;; *) target="$stage/${dest#./}" ;; esac
  for s in "${srcs[@]}"; do
    rel="${s#/src/}"
    [ -e "$repo/$rel" ] || fail "COPY $s: $rel is not in the built tree"
    if [ "${#srcs[@]}" -gt 1 ] || [ "${dest: -1}" = "/" ]; then mkdir -p "$target"; cp -al "$repo/$rel" "$target/" 2>/dev/null || cp -a "$repo/$rel" "$target/"
    else mkdir -p "$(dirname "$target")"; cp -al "$repo/$rel" "$target" 2>/dev/null || cp -a "$repo/$rel" "$target"; fi
    n=$((n + 1))
  done
done < <(grep -E '^COPY --from=build ' "$dockerfile")
echo "check-image: staged $n COPY sources into $image_root"
entry="$(sed -n 's/^ENTRYPOINT \["\([^"]*\)".*/\1/p' "$dockerfile")"
[ -x "$work/rootfs$entry" ] || fail "ENTRYPOINT $entry is not an executable in the staged tree"

# 2. The entrypoints, against the staged tree.
for mode in "${modes[@]}"; do
  host="$work/host-$mode"
  out="$("$stage/docker/node-install.sh" --dataplane "$mode" --bin-dir "$host/opt/cni/bin" --conf-dir "$host/etc/cni/net.d" --app-dir "$host/opt/vnet-cni")" \
    || fail "node-install.sh --dataplane $mode failed"
  echo "check-image: $mode: ${out//$'\n'/ | }"
  for b in azure-vnet azure-vnet-ipam vnetctl; do [ -x "$host/opt/cni/bin/$b" ] || fail "$mode: $b not installed"; done
  cmp -s "$host/etc/cni/net.d/10-azure.conflist" "$stage/docker/conflists/10-azure-$mode.conflist" || fail "$mode: the installed conflist is not 10-azure-$mode.conflist"
  [ -x "$host/opt/vnet-cni/node/bin/node" ] || fail "$mode: node not copied for the host"
  # Launchers that are scripts must run the copied node, which exists on the host.
  if head -c2 "$host/opt/cni/bin/vnetctl" | grep -q '#!'; then
    grep -q "$host/opt/vnet-cni/node/bin/node" "$host/opt/cni/bin/vnetctl" || fail "$mode: vnetctl does not run the host copy of node"
  fi
  for p in azure-vnet azure-vnet-ipam; do
    v="$(echo '{"cniVersion":"1.1.0"}' | CNI_COMMAND=VERSION "$host/opt/cni/bin/$p")" || fail "$mode: $p VERSION exited non-zero"
    case "$v" in *'"supportedVersions"'*'"1.1.0"'*) ;; *) fail "$mode: $p VERSION printed $v" ;; esac
  done
  ver="$("$host/opt/cni/bin/vnetctl" version)"
  want="vnet-cni v$(node -p "require('$repo/package.json').version")"
  [ "$ver" = "$want" ] || fail "$mode: vnetctl version printed '$ver', want '$want'"
  "$host/opt/cni/bin/vnetctl" --help | grep -q '^  status' || fail "$mode: vnetctl --help does not list status"
  set +e
  st="$("$host/opt/cni/bin/vnetctl" status --conflist "$host/etc/cni/net.d/10-azure.conflist" --socket "$work/none.sock" 2>&1)"; rc=$?
  set -e
  [ $rc = 1 ] && [[ "$st" == "not ready: daemon socket"* ]] || fail "$mode: vnetctl status without a daemon: rc $rc, '$st'"
  echo "check-image: $mode: plugins VERSION ok, $ver, status without a daemon: $st"
done
"$work/rootfs$entry" --help >/dev/null || fail "ENTRYPOINT --help failed"

# 3. apt package names.
missing=()
pkgs="$(sed -n 's/.*apt-get install -y --no-install-recommends \([^\\&]*\).*/\1/p' "$dockerfile")"
[ -n "$pkgs" ] || fail "no apt-get install lines found"
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
  # No package lists at all (a machine that never ran apt-get update): nothing to check against.
  echo "check-image: apt check SKIPPED: no apt package lists (run apt-get update)"
else
  # One apt-cache run for all names: without a pkgcache.bin (Debian images
  # disable it) every run rebuilds the cache, about a CPU-second each.
  found=" $(apt-cache show --no-all-versions $pkgs 2>/dev/null | sed -n 's/^Package: //p' | tr '\n' ' ') "
  for p in $pkgs; do [[ "$found" == *" $p "* ]] || missing+=("$p"); done
  [ ${#missing[@]} = 0 ] || fail "apt packages not found: ${missing[*]}"
  echo "check-image: $(echo $pkgs | wc -w) apt packages exist: $(echo $pkgs)"
fi
echo "check-image: ok"
