#!/usr/bin/env bash
# The Debian packages a real node and the local image build need: a container runtime (containerd, runc), CNI
# plugins, iptables and conntrack for kube-proxy, buildah to build the Dockerfile, debootstrap for the local base
# image. Idempotent: installs only what is missing (root, Debian/Ubuntu). Nothing is started or enabled: the
# harness runs its own containerd with its own root, state and socket.
set -euo pipefail

packages=(containerd runc containernetworking-plugins iptables conntrack buildah debootstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [[ ${#missing[@]} == 0 ]]; then
  echo "node packages installed" >&2
  exit 0
fi
[[ $(id -u) == 0 ]] || { echo "error: installing ${missing[*]} needs root" >&2; exit 1; }
command -v apt-get >/dev/null || { echo "error: apt-get not found; install ${missing[*]} by hand" >&2; exit 1; }
echo "installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d: the package must not start the machine's own containerd service (the node runs its own).
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
fi
trap '[[ $own_policy == 1 ]] && rm -f "$policy"' EXIT
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
