#!/bin/sh
# Builds a root filesystem directory for the Python worker, usable as a policy's
# `filesystem.rootfs`:
#
#   images/python-worker/build-rootfs.sh /var/lib/corral/images/python
#
# It uses the first tool found:
#   1. debootstrap (or mmdebstrap): a minimal Debian 12 with python3, no container engine;
#   2. docker or podman: builds the Dockerfile beside this script and exports its filesystem.
# Either way the worker's modules end up in OUTPUT/opt/corral. Run as root (debootstrap needs
# it, and the files must belong to root so the sandboxed worker cannot change them). The
# directory is built under OUTPUT.tmp and renamed into place, so a failed run leaves no
# half-built root behind. Not run by the tests: it downloads packages.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
suite=${CORRAL_ROOTFS_SUITE:-bookworm}
mirror=${CORRAL_ROOTFS_MIRROR:-http://deb.debian.org/debian}

usage() {
  echo "usage: $0 OUTPUT_DIR" >&2
  exit 2
}

build_with_debootstrap() {
  if command -v mmdebstrap >/dev/null 2>&1; then
    mmdebstrap --variant=minbase --include=python3 "$suite" "$1" "$mirror"
  else
    debootstrap --variant=minbase --include=python3 "$suite" "$1" "$mirror"
  fi
  rm -rf "$1/var/cache/apt/archives/"*.deb "$1/var/lib/apt/lists/"*
}

build_with_engine() {
  engine=$1
  target=$2
  tag="corral-python-worker:rootfs-$$"
  "$engine" build -t "$tag" "$here"
  container=$("$engine" create "$tag")
  "$engine" export "$container" | tar -x -C "$target"
  "$engine" rm "$container" >/dev/null
  "$engine" rmi "$tag" >/dev/null
}

install_worker() {
  mkdir -p "$1/opt/corral"
  cp "$here/worker.py" "$here"/corral_*.py "$1/opt/corral/"
  chown -R 0:0 "$1/opt/corral"
  chmod 0755 "$1/opt/corral"
  chmod 0644 "$1/opt/corral/"*.py
}

[ $# -eq 1 ] || usage
output=$1
case $output in
  /*) ;;
  *) echo "$0: OUTPUT_DIR must be absolute (policies name it by absolute path)" >&2; exit 2 ;;
esac
if [ -e "$output" ]; then
  echo "$0: $output already exists; remove it first" >&2
  exit 1
fi

staging="$output.tmp"
rm -rf "$staging"
mkdir -p "$staging"
trap 'rm -rf "$staging"' EXIT

if command -v debootstrap >/dev/null 2>&1 || command -v mmdebstrap >/dev/null 2>&1; then
  build_with_debootstrap "$staging"
elif command -v docker >/dev/null 2>&1; then
  build_with_engine docker "$staging"
elif command -v podman >/dev/null 2>&1; then
  build_with_engine podman "$staging"
else
  echo "$0: need debootstrap, mmdebstrap, docker or podman to build a rootfs" >&2
  exit 1
fi

install_worker "$staging"
test -x "$staging/usr/bin/python3" || { echo "$0: no /usr/bin/python3 in the result" >&2; exit 1; }
mv "$staging" "$output"
trap - EXIT
echo "rootfs ready: $output (set filesystem.rootfs: $output in a policy)"
