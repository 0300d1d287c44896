#!/usr/bin/env bash
# Builds keyceremony and kmslocal reproducibly into DIST (default: dist/) and
# writes DIST/SHA256SUMS. The same commit built with the same Go version gives
# the same bytes in any directory: -trimpath drops the build directory, the
# VCS stamp records the commit, and nothing else of the machine is recorded.
#
#   make release                   build from a clean checkout
#   DIST=/some/dir make release    elsewhere
#   RELEASE_GO=any make release    with another Go version (hashes will differ
#                                  from those published for the pinned one)
set -euo pipefail
cd "$(dirname "$0")/.."

# The Go version releases are built with (README, "Bringing keyceremony into
# the room"). Another Go version gives other bytes.
pinned=go1.26.8
dist=${DIST:-dist}

have=$(go env GOVERSION)
if [ "$have" != "$pinned" ] && [ "${RELEASE_GO:-}" != any ]; then
  echo "release: Go is $have but releases are built with $pinned: install $pinned, or set RELEASE_GO=any (the hashes will not match the published SHA256SUMS)" >&2
  exit 1
fi
if ! git rev-parse --git-dir >/dev/null 2>&1 || [ -f .git ]; then
  echo "release: build from a git clone (not a worktree or an export): the binary records the commit it was built from" >&2
  exit 1
fi
if [ -n "$(git status --porcelain)" ]; then
  echo "release: the checkout has uncommitted or untracked files (git status): commit or remove them; a release is built from a commit, and Go would stamp it modified" >&2
  exit 1
fi

mkdir -p "$dist"
# GOFLAGS is cleared so a machine-wide setting (such as -buildvcs=false)
# cannot change the binary; CGO_ENABLED=1 because miekg/pkcs11 uses cgo.
export GOFLAGS= CGO_ENABLED=1
for p in keyceremony kmslocal; do
  go build -trimpath -buildvcs=true -o "$dist/$p" "./cmd/$p"
done
(cd "$dist" && sha256sum keyceremony kmslocal > SHA256SUMS)
echo "release: built $(git rev-parse HEAD) with $have into $dist:"
cat "$dist/SHA256SUMS"
