#!/usr/bin/env bash
# Host prerequisites of the local backend and the BCC probes (idempotent; run as root).
# Debian packages, kernel headers linked for BCC, tracefs mounted. Says what it does.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "setup-host: needs root (apt-get, /lib/modules links, tracefs). Run: sudo make setup" >&2
  exit 2
fi

pkgs=(iproute2 iptables util-linux procps python3-bpfcc bpfcc-tools linux-headers-amd64 make git gcc libc6-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# BCC compiles against kernel headers; this kernel has no package of its own, so point
# /lib/modules/$(uname -r)/{build,source} at Debian's newest amd64 headers.
kver=$(uname -r)
hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1 || true)
if [ -n "$hdr" ] && [ ! -e "/lib/modules/$kver/build" ]; then
  mkdir -p "/lib/modules/$kver"
  ln -sfn "$hdr" "/lib/modules/$kver/build"
  [ -n "$common" ] && ln -sfn "$common" "/lib/modules/$kver/source"
  echo "setup-host: linked /lib/modules/$kver/build -> $hdr"
fi

if [ ! -d /sys/kernel/tracing/events ]; then
  mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null \
    && echo "setup-host: mounted tracefs at /sys/kernel/tracing" \
    || echo "setup-host: could not mount tracefs; BCC probes will be skipped (meshbench doctor)"
fi
