#!/usr/bin/env bash
# Installs what building, running and testing corral needs on Debian 12, and nothing more.
# Idempotent: packages already present are not touched, so `make run` stays fast on a
# machine that has them. Needs root (apt-get) only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake ccache pkg-config
  libcpp-httplib-dev nlohmann-json3-dev libyaml-cpp-dev libseccomp-dev libcap-dev
  catch2 libspdlog-dev libfmt-dev libcli11-dev libsqlite3-dev libssl-dev
  python3 bubblewrap iproute2 procps curl util-linux
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root or install them" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
