#!/usr/bin/env bash
# Checks that each vendored crate in patches/ is its crates.io release plus exactly its diff
# (patches/<crate>.diff), so that a review reads the diff, not the whole tree. Downloads the
# release from crates.io and checks its SHA-256 first.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

check() { # crate version sha256
  local crate=$1 version=$2 sha=$3
  local file="$work/$crate-$version.crate"
  curl -sSfL "https://static.crates.io/crates/$crate/$crate-$version.crate" -o "$file"
  echo "$sha  $file" | sha256sum --check --quiet
  tar xzf "$file" -C "$work"
  local tree="$work/$crate-$version"
  # Cargo's own packaging files: not part of the source a patch can be built from.
  rm -f "$tree/Cargo.lock" "$tree/Cargo.toml.orig"
  (cd "$tree" && patch --quiet -p1 < "$here/$crate.diff")
  if ! diff -r "$tree" "$here/$crate"; then
    echo "patches/$crate is not $crate $version + patches/$crate.diff" >&2
    exit 1
  fi
  echo "patches/$crate = $crate $version + patches/$crate.diff"
}

check cubecl-spirv 0.11.3 b54fa5e35451446c2cccfdc9ec940faeeab25880472b63046b7d28f04d7226b0
