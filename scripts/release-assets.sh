#!/bin/sh
# Lays out a release exactly as scripts/install.sh downloads it, in one place for the release
# workflow and the tests:
#
#   OUT/lite-apiserver-x86_64-unknown-linux-gnu
#   OUT/lite-apiserver-aarch64-unknown-linux-gnu
#   OUT/install.sh        (REPO and DEFAULT_VERSION stamped in)
#   OUT/<name>.yaml       (each deploy/ manifest, its lite-apiserver image set to this release's)
#   OUT/SHA256SUMS        (sha256sum format, one line per file above)
#
# Usage: release-assets.sh --dist DIR --out DIR [--repo OWNER/NAME] [--version TAG]
set -eu

TRIPLES="x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu"
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
dist= out= repo= version=

die() {
  printf 'release-assets: error: %s\n' "$*" >&2
  exit 1
}

need() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --dist) need "$@"; dist=$2; shift 2 ;;
    --out) need "$@"; out=$2; shift 2 ;;
    --repo) need "$@"; repo=$2; shift 2 ;;
    --version) need "$@"; version=$2; shift 2 ;;
    *) die "unknown option '$1' (usage: release-assets.sh --dist DIR --out DIR [--repo OWNER/NAME] [--version TAG])" ;;
  esac
done
[ -n "$dist" ] || die "--dist DIR is required (the folder deno task compile wrote)"
[ -n "$out" ] || die "--out DIR is required"
case "$repo" in
  "" | */*) ;;
  *) die "--repo must be OWNER/NAME, got '$repo'" ;;
esac
case "$version" in
  "" | v[0-9]*) ;;
  *) die "--version must be a tag like v1.2.3, got '$version'" ;;
esac
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is needed (coreutils)"

mkdir -p "$out"
for t in $TRIPLES; do
  f="$dist/lite-apiserver-$t"
  [ -f "$f" ] || die "$f is missing: build it with deno task compile"
  cp "$f" "$out/lite-apiserver-$t"
  chmod 0755 "$out/lite-apiserver-$t"
done

# The attached install.sh installs this release by default, from this repository.
sed -e "s|^REPO=.*|REPO=${repo:-$(sed -n 's/^REPO=//p' "$root/scripts/install.sh")}|" \
  -e "s|^DEFAULT_VERSION=.*|DEFAULT_VERSION=$version|" \
  "$root/scripts/install.sh" >"$out/install.sh"
chmod 0755 "$out/install.sh"

# Manifests name the image of this release (ghcr.io wants the repository in lower case).
image_repo=$(printf '%s' "${repo:-$(sed -n 's/^REPO=//p' "$root/scripts/install.sh")}" | tr 'A-Z' 'a-z')
manifests=""
for m in "$root"/deploy/*.yaml; do
  [ -f "$m" ] || continue
  name=$(basename "$m")
  if [ -n "$version" ]; then
    sed -e "s|image: ghcr.io/[^:]*/lite-apiserver:.*|image: ghcr.io/$image_repo:$version|" "$m" >"$out/$name"
  else
    cp "$m" "$out/$name"
  fi
  manifests="$manifests $name"
done

(
  cd "$out"
  files=""
  for t in $TRIPLES; do files="$files lite-apiserver-$t"; done
  # shellcheck disable=SC2086
  sha256sum $files install.sh $manifests >SHA256SUMS.tmp
  mv SHA256SUMS.tmp SHA256SUMS
)
printf 'release-assets: wrote %s\n' "$out"
