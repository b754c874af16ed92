#!/usr/bin/env bash
# Builds knockgate's Debian packages with cargo-deb (Cargo.toml, [package.metadata.deb]):
#
#   scripts/deb.sh                      amd64, arm64 and armhf, into target/deb/
#   scripts/deb.sh arm64                one or more of amd64, arm64, armhf
#   DEB_VERSION=0.1.0-2 scripts/deb.sh amd64
#                                       another version (the upgrade test's rebuilt package)
#   scripts/deb.sh --tools-only         only installs the pinned cargo-deb
#   DEB_LINTIAN=1 scripts/deb.sh        also lintian on each package: fails on any error or
#                                       warning (the overrides are dist/debian/lintian-overrides)
#
# Before packaging: the man pages and the bash and zsh completions are generated from the clap
# definitions (examples/gen-docs.rs), and the Debian changelog from Cargo.toml's version and
# the last commit's date. The ARM binaries come from scripts/cross.sh (up to date if
# scripts/arm.sh ran), amd64's from a native release build. Installs what is missing:
# cargo-deb (pinned), dpkg-dev (dpkg-shlibdeps), lintian when asked. See README, "On
# Raspberry Pi OS".
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
OUT=target/deb
log() { echo "deb.sh: $*" >&2; }

tools_only=no
if [ "${1:-}" = --tools-only ]; then tools_only=yes; shift; fi
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64 armhf)

install_cargo_deb() {
    if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
        log "installing cargo-deb $CARGO_DEB_VERSION"
        cargo install --quiet --locked --version "$CARGO_DEB_VERSION" cargo-deb
    fi
}
# Only the pinned cargo-deb (.ci/run installs it in the background during the tests).
if [ "$tools_only" = yes ]; then install_cargo_deb; exit 0; fi
need_apt=()
command -v dpkg-shlibdeps >/dev/null || need_apt+=(dpkg-dev)
if [ "${DEB_LINTIAN:-0}" = 1 ] && ! command -v lintian >/dev/null; then need_apt+=(lintian); fi
if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${need_apt[@]}" >/dev/null
fi
install_cargo_deb

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
deb_version=${DEB_VERSION:-$version-1}
mkdir -p "$OUT"

log "man pages and completions (examples/gen-docs.rs)"
cargo run --locked --quiet --example gen-docs -- "$OUT/docs" >/dev/null

# The changelog cargo-deb packs (Cargo.toml: changelog = "target/deb/changelog").
date=$(git log -1 --format=%cD 2>/dev/null || date -R)
cat >"$OUT/changelog" <<EOF
knockgate ($deb_version) trixie; urgency=medium

  * Built from knockgate $version (commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)).

 -- knockgate developers <knockgate@users.noreply.github.com>  $date
EOF

# Depends (one per line, sorted) of a package.
depends() { dpkg-deb -f "$1" Depends | tr ',' '\n' | sed 's/^ *//' | sort; }
# The shared libraries a binary needs, sorted.
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort; }

for arch in "${arches[@]}"; do
    case $arch in
        amd64)
            log "amd64: release build"
            cargo build --release --locked --quiet
            target=()
            variant=()
            ;;
        arm64 | armhf)
            t=aarch64-unknown-linux-gnu
            [ "$arch" = armhf ] && t=armv7-unknown-linux-gnueabihf
            log "$arch: release build (scripts/cross.sh)"
            bash scripts/cross.sh cargo "$t" build --release --locked --quiet
            target=(--target "$t")
            variant=()
            [ "$arch" = armhf ] && variant=(--variant armhf)
            ;;
        *)
            log "unknown architecture $arch (amd64, arm64, armhf)"
            exit 2
            ;;
    esac
    deb=$OUT/knockgate_${deb_version}_$arch.deb
    rm -f "$deb"
    # The release profile strips already; the host's strip cannot read ARM binaries.
    cargo deb --no-build --no-strip --locked --quiet "${target[@]}" "${variant[@]}" \
        --deb-version "$deb_version" --output "$deb" >/dev/null
    [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || { log "$deb: wrong architecture"; exit 1; }
    log "$arch: $deb ($(stat -c %s "$deb") bytes), Depends: $(dpkg-deb -f "$deb" Depends)"
    if [ "${DEB_LINTIAN:-0}" = 1 ]; then
        log "$arch: lintian"
        # A warning that is not overridden fails the build as an error does.
        status=0
        report=$(lintian --fail-on error,warning "$deb" 2>&1) || status=$?
        grep -v '^running with root privileges' <<<"$report" >&2 || true
        [ "$status" = 0 ] || { log "$arch: lintian found errors or warnings (above)"; exit 1; }
    fi
done

# armhf's Depends is written in Cargo.toml (see there): arm64's computed one with Debian 13's
# 32-bit name of the library (libpcap0.8t64: the 64-bit time_t ABI; on arm64 the same package
# provides libpcap0.8), for a binary that needs the same libraries. And the armhf binary must
# have been built with the 64-bit time_t (scripts/cross.sh): it calls glibc's _TIME_BITS=64
# entry points, as the libc crate links them then.
# Checked when this run built one of them (scripts/test-deb.sh's amd64-only runs skip it).
if [[ " ${arches[*]} " == *" arm"* ]] && [ -f "$OUT/knockgate_${deb_version}_arm64.deb" ] &&
    [ -f "$OUT/knockgate_${deb_version}_armhf.deb" ]; then
    a=$OUT/knockgate_${deb_version}_arm64.deb
    h=$OUT/knockgate_${deb_version}_armhf.deb
    if [ "$(depends "$a" | sed 's/^libpcap0\.8 /libpcap0.8t64 /')" != "$(depends "$h")" ]; then
        log "armhf's Depends is not arm64's (computed) with libpcap0.8t64: update [package.metadata.deb.variants.armhf]"
        diff <(depends "$a") <(depends "$h") >&2 || true
        exit 1
    fi
    if [ "$(needed target/aarch64-unknown-linux-gnu/release/knockgate)" != \
        "$(needed target/armv7-unknown-linux-gnueabihf/release/knockgate)" ]; then
        log "the arm64 and armhf binaries need different libraries: check armhf's Depends"
        exit 1
    fi
    time64=$(readelf --dyn-syms -W target/armv7-unknown-linux-gnueabihf/release/knockgate |
        grep -oE '__(clock_gettime64|setsockopt64|fcntl_time64|ioctl_time64)' | sort -u | tr '\n' ' ')
    [ "$(wc -w <<<"$time64")" = 4 ] || {
        log "the armhf binary was not built with a 64-bit time_t (found only: ${time64:-none}): scripts/cross.sh"
        exit 1
    }
    log "armhf: Depends as arm64's with libpcap0.8t64, the same libraries needed, a 64-bit time_t ($time64)"
fi
