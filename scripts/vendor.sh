#!/usr/bin/env bash
# The crates in vendor/ are crates.io releases with a small patch each, so that knockgate builds
# for 32-bit ARM with a 64-bit time_t (the armhf package for Debian 13; see vendor/README.md).
# This script proves that each one is exactly that:
#
#   scripts/vendor.sh check        for every crate below: the release's .crate file (cargo's
#                                  cache, else static.crates.io), its SHA-256 checked against
#                                  the one written here (crates.io's, from Cargo.lock before the
#                                  patch), unpacked, pruned (tests, benches, examples: not built
#                                  as a dependency), vendor/patches/NAME.patch applied, and the
#                                  result compared with vendor/NAME file by file. Fails on any
#                                  difference. In scripts/test.sh.
#   scripts/vendor.sh fresh NAME   vendor/NAME replaced by the pruned release, unpatched (to
#                                  start a patch, or after a version change here)
#   scripts/vendor.sh diff NAME    the diff from the pruned release to vendor/NAME: what
#                                  vendor/patches/NAME.patch must hold after an edit there
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# name version sha256 (crates.io's checksum of the .crate file)
CRATES=(
    "gpiocdev-uapi 0.7.0 cb1a3ace06ef708255a33e738ec7a5e7718fe8e53bd9a39299b4f1cd4b13e9a3"
    "nix 0.32.0 77730ed34f01f4990cb2ea67fec715ecebc6fab9a6396cf83c5529b13f581bdc"
    "socket2 0.6.5 c3d1e2c7f27f8d4cb10542a02c49005dbd6e93095799d6f3be745fae9f8fedd4"
)

log() { echo "vendor.sh: $*" >&2; }

work=$(mktemp -d /tmp/knockgate-vendor.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Unpacks NAME VERSION SHA256, pruned, into $work/NAME.
pristine() {
    local name=$1 version=$2 sum=$3
    local file=$work/$name-$version.crate cached
    cached=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/cache" -name "$name-$version.crate" \
        -print -quit 2>/dev/null || true)
    if [ -n "$cached" ]; then
        cp "$cached" "$file"
    else
        curl -fsSL --retry 3 -o "$file" "https://static.crates.io/crates/$name/$name-$version.crate"
    fi
    local got
    got=$(sha256sum "$file" | cut -d' ' -f1)
    [ "$got" = "$sum" ] || {
        log "FAIL: $name-$version.crate has SHA-256 $got, crates.io's is $sum"
        exit 1
    }
    tar -xzf "$file" -C "$work"
    mv "$work/$name-$version" "$work/$name"
    # What a dependency never builds, and cargo's packaging leftovers.
    rm -rf "$work/$name"/{tests,test,benches,examples,Cargo.lock,Cargo.toml.orig,.cargo_vcs_info.json,.cargo-ok}
    # Their manifest sections go with them (a path dependency's manifest must name real files).
    python3 - "$work/$name/Cargo.toml" <<'PYEOF'
import sys
path = sys.argv[1]
out, skip = [], False
for line in open(path).read().splitlines():
    if line.startswith("["):
        head = line.strip()
        skip = head in ("[[test]]", "[[bench]]", "[[example]]") or "dev-dependencies" in head
    if not skip:
        out.append(line)
open(path, "w").write("\n".join(out).rstrip("\n") + "\n")
PYEOF
}

# The pruned release of the crate NAME listed above, into $work/NAME.
pristine_named() {
    local entry n version sum
    for entry in "${CRATES[@]}"; do
        read -r n version sum <<<"$entry"
        [ "$n" = "$1" ] && { pristine "$n" "$version" "$sum"; return; }
    done
    log "unknown crate $1"
    exit 2
}

case "${1:-check}" in
check)
    status=0
    for entry in "${CRATES[@]}"; do
        read -r name version sum <<<"$entry"
        pristine "$name" "$version" "$sum"
        patch -s -p1 -d "$work/$name" <"vendor/patches/$name.patch"
        if diff -r "$work/$name" "vendor/$name" >"$work/$name.diff"; then
            log "$name $version: crates.io's release + vendor/patches/$name.patch"
        else
            log "FAIL: vendor/$name is not crates.io's $name $version + its patch:"
            cat "$work/$name.diff" >&2
            status=1
        fi
    done
    exit "$status"
    ;;
fresh)
    # vendor/NAME as the pruned release, unpatched: the start of a new patch or version.
    name=${2:?usage: $0 fresh NAME}
    pristine_named "$name"
    rm -rf "vendor/$name"
    mkdir -p vendor
    cp -r "$work/$name" "vendor/$name"
    ;;
diff)
    name=${2:?usage: $0 diff NAME}
    pristine_named "$name"
    (
        cd "$work"
        mkdir a
        mv "$name" "a/$name"
        ln -s "$ROOT/vendor" b
        # diff exits 1 when the trees differ, as they do: the pipeline's status is sed's.
        set +o pipefail
        diff -ruN "a/$name" "b/$name" | grep -v "^diff -ruN " |
            sed -e "s#^--- a/$name/#--- a/#" -e "s#^+++ b/$name/#+++ b/#" |
            sed -E 's#^(---|\+\+\+) ([ab]/[^\t]*)\t.*#\1 \2#'
    )
    ;;
*)
    log "usage: $0 [check|fresh NAME|diff NAME]"
    exit 2
    ;;
esac
