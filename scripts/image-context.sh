#!/bin/sh
# Lays out the container build context for Containerfile from a release folder (the one
# scripts/release-assets.sh writes, or dist/ from deno task compile):
#
#   OUT/Containerfile
#   OUT/linux/amd64/lite-apiserver      (lite-apiserver-x86_64-unknown-linux-gnu)
#   OUT/linux/arm64/lite-apiserver      (lite-apiserver-aarch64-unknown-linux-gnu)
#   OUT/cache/                          (becomes /var/lib/lite-apiserver, owned by the image's user)
#
# Usage: image-context.sh --dist DIR --out DIR
set -eu
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
dist= out=
die() {
  printf 'image-context: error: %s\n' "$*" >&2
  exit 1
}
need() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --dist) need "$@"; dist=$2; shift 2 ;;
    --out) need "$@"; out=$2; shift 2 ;;
    *) die "unknown option '$1' (usage: image-context.sh --dist DIR --out DIR)" ;;
  esac
done
[ -n "$dist" ] && [ -n "$out" ] || die "usage: image-context.sh --dist DIR --out DIR"

mkdir -p "$out/cache"
chmod 0700 "$out/cache"
cp "$root/Containerfile" "$out/Containerfile"
for pair in amd64:x86_64-unknown-linux-gnu arm64:aarch64-unknown-linux-gnu; do
  platform=${pair%%:*} triple=${pair#*:}
  src="$dist/lite-apiserver-$triple"
  [ -f "$src" ] || die "$src is missing: build it with deno task compile"
  mkdir -p "$out/linux/$platform"
  cp "$src" "$out/linux/$platform/lite-apiserver"
  chmod 0755 "$out/linux/$platform/lite-apiserver"
done
printf 'image-context: wrote %s\n' "$out"
