#!/usr/bin/env bash
# Install the Debian packages named as arguments that are not installed yet (root only).
# policy-rc.d keeps their services (prometheus, containerd, libvirt) from starting: the tests start what they need.
set -euo pipefail
recommends=--no-install-recommends
if [ "${1:-}" = --with-recommends ]; then recommends=; shift; fi   # as the Vagrant path was tried here
if [ "$(id -u)" != 0 ]; then
  echo "not root: tests that need real hosts will be skipped" >&2
  exit 0
fi
missing=()
for package in "$@"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $recommends "${missing[@]}"
