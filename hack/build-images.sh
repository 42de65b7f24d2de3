#!/usr/bin/env bash
# Builds Zeta's images from the real Dockerfile on a machine that cannot pull: a local Debian base made with
# debootstrap stands in for python:3.11-slim (`--build-arg BASE=...`), buildah builds the `zeta` and `sim`
# targets, and each image is saved as a docker-archive that the node harness imports into its containerd.
# Also builds the node's sandbox ("pause") image on the same base, so nothing is ever pulled.
#
# Cached under $ZETA_CACHE/images (default ~/.cache/zeta/images): the base by the debootstrap arguments and the
# suite's package index (the versions it would install), and tagged with a digest of the package versions it
# holds; the images by that tag plus the content of the Dockerfile and the sources they copy. A second run builds nothing. Root only (debootstrap, buildah).
# Prints one line per image on stdout: `<name> <reference> <archive>`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

[[ $(id -u) == 0 ]] || { echo "error: building the images needs root (debootstrap, buildah)" >&2; exit 1; }
for tool in debootstrap buildah; do
  command -v "$tool" >/dev/null || { echo "error: $tool missing (bash hack/install-node-packages.sh)" >&2; exit 1; }
done

suite=bookworm
mirror="${ZETA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
debootstrap_args=(--variant=minbase --include=python3,python3-venv,ca-certificates "$suite")
cache="${ZETA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zeta}/images"
mkdir -p "$cache"
# One build at a time on this machine: the clean-up below removes every working container and unmounts the
# shared storage, which breaks a build running beside this one (two test workers once did exactly that).
exec {lock}>"$cache/build.lock"
flock "$lock"
# buildah's own storage, never the machine's /var/lib/containers.
storage="$cache/storage"
runroot="/run/zeta-buildah"
bh() { buildah --root "$storage" --runroot "$runroot" --storage-driver overlay "$@"; }
exists() { bh inspect --type image "$1" >/dev/null 2>&1; }
# Nothing of the build may stay on the machine: temp directories, working containers a failed build left, and
# the private bind mount containers/storage puts on its overlay directory.
work="$(mktemp -d /tmp/zeta-images.XXXXXX)"
cleanup() {
  rm -rf "$work"
  bh rm --all >/dev/null 2>&1 || true
  if mountpoint -q "$storage/overlay"; then umount "$storage/overlay" || true; fi
}
trap cleanup EXIT

# --- base ---------------------------------------------------------------------------------------------------
# The suite's signed index (InRelease) names every package version debootstrap can install: a new one (a point
# release) means new versions, so a new base. Offline, the newest base made with the same arguments serves.
args_key="$(printf '%s\n' "${debootstrap_args[@]}" "$mirror" | sha256sum | cut -c1-12)"
index="$(curl -fsSL --max-time 30 "$mirror/dists/$suite/InRelease" 2>/dev/null | sed -n '/^SHA256:/,$p' || true)"
if [[ -n "$index" ]]; then
  base_stamp="$cache/base-$args_key-$(sha256sum <<<"$index" | cut -c1-12)"
else
  base_stamp="$(ls -t "$cache/base-$args_key"-* 2>/dev/null | head -1 || true)"
  base_stamp="${base_stamp:-$cache/base-$args_key-offline}"
fi
if [[ -f "$base_stamp" ]] && exists "$(cat "$base_stamp")"; then
  base="$(cat "$base_stamp")"
  echo "base $base cached" >&2
else
  tmp="$work/base"
  mkdir "$tmp"
  echo "debootstrap ${debootstrap_args[*]} (first time only: about a minute)" >&2
  debootstrap "${debootstrap_args[@]}" "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
    { tail -20 "$tmp/debootstrap.log" >&2; exit 1; }
  # The tag names the package versions the base holds: a point release gives a new base, and new images.
  versions="$(chroot "$tmp/rootfs" dpkg-query -W -f='${Package}=${Version}\n' | sort | sha256sum | cut -c1-12)"
  rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"*
  tar -C "$tmp/rootfs" --numeric-owner -cf "$tmp/rootfs.tar" .
  rm -rf "$tmp/rootfs"
  printf 'FROM scratch\nADD rootfs.tar /\nCMD ["python3"]\n' >"$tmp/Containerfile"
  base="localhost/zeta-base:$suite-$versions"
  bh bud --quiet --isolation chroot -f "$tmp/Containerfile" -t "$base" "$tmp" >&2
  echo "$base" >"$base_stamp"
  echo "base $base built" >&2
fi
base_tag="${base##*:}"

# --- images ---------------------------------------------------------------------------------------------------
sources="$( (git ls-files -s Dockerfile pyproject.toml README.md zeta_operator sim 2>/dev/null ||
  find Dockerfile pyproject.toml README.md zeta_operator sim -type f -exec sha256sum {} +) | sha256sum | cut -c1-12)"
key="$base_tag-$sources"
dirty="$(git status --porcelain -- Dockerfile pyproject.toml README.md zeta_operator sim 2>/dev/null || true)"
if [[ -n "$dirty" ]]; then # uncommitted changes: key on the files' content, not the index
  key="$base_tag-$(find Dockerfile pyproject.toml README.md zeta_operator sim -type f ! -path '*/__pycache__/*' \
    -exec sha256sum {} + | sort -k2 | sha256sum | cut -c1-12)"
fi

save() { # name reference
  local archive="$cache/$1_${2##*:}.tar"
  if [[ ! -f "$archive" ]]; then
    # A build killed mid-push leaves a partial archive, which docker-archive refuses to write over (the
    # build lock is held, so no other build is writing it).
    rm -f "$archive.part"
    bh push --quiet "$2" "docker-archive:$archive.part:$2" >&2
    mv -f "$archive.part" "$archive"
  fi
  # Only the newest archive of each image is kept (one per source change would pile up).
  find "$cache" -maxdepth 1 -name "$1_*.tar" ! -name "${archive##*/}" -delete
  echo "$1 $2 $archive"
}

# Host network: the Dockerfile installs with pip from the package index. The machine's pip configuration and
# CA bundle (an index mirror, a TLS-intercepting proxy) are mounted for the RUN steps only, never committed.
host_config=()
for f in /etc/pip.conf /etc/ssl/certs/ca-certificates.crt; do
  [[ -f $f ]] && host_config+=(--volume "$f:$f:ro")
done
build() { # name target
  local ref="localhost/$1:$key"
  if ! exists "$ref"; then
    echo "buildah bud --target $2 (BASE=$base)" >&2
    bh bud --quiet --layers --isolation chroot --network host "${host_config[@]}" \
      --build-arg "BASE=$base" --target "$2" -t "$ref" . >&2
  fi
  save "$1" "$ref"
}

pause="localhost/zeta-pause:$base_tag"
if ! exists "$pause"; then
  tmp="$work/pause"
  mkdir "$tmp"
  # The pod sandbox only holds the namespaces: a shell that sleeps, and exits at once on SIGTERM.
  printf '%s\n' "FROM $base" 'USER 65535:65535' \
    "ENTRYPOINT [\"/bin/sh\", \"-c\", \"trap 'exit 0' TERM INT; while :; do sleep 86400 & wait \$!; done\"]" \
    >"$tmp/Containerfile"
  bh bud --quiet --isolation chroot -f "$tmp/Containerfile" -t "$pause" "$tmp" >&2
fi
save zeta-pause "$pause"
build zeta zeta
build zeta-sim sim
