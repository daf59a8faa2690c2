#!/bin/sh
# Builds test/cniclient/cniclient against Debian's libcni sources
# (golang-github-appc-cni-dev, GOPATH mode: no module download, no network).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
src="$here/test/cniclient"
if [ ! -d /usr/share/gocode/src/github.com/containernetworking/cni/libcni ]; then
  echo "build-cniclient: libcni sources missing; apt-get install golang-github-appc-cni-dev" >&2
  exit 1
fi
cd "$src"
GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= CGO_ENABLED=0 \
  GOCACHE="${GOCACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/go-build}" \
  go build -trimpath -o "$src/.cniclient.$$" .
# rename: atomic, so a concurrent build or a running client never sees a half-written file
mv -f "$src/.cniclient.$$" "$src/cniclient"
echo "$src/cniclient"
