#!/usr/bin/env bash
# Builds knockgate for the Raspberry Pi with plain cargo and Debian 12's cross toolchains, as
# root, no docker needed (developers with docker can use `cross` and Cross.toml instead):
#
#   scripts/cross.sh                  installs what is missing, then release-builds both targets
#   scripts/cross.sh setup            only installs (idempotent)
#   scripts/cross.sh cargo TARGET SUBCOMMAND ARGS...
#                                     runs `cargo SUBCOMMAND --target TARGET ARGS...` with that
#                                     target's linker, libpcap and qemu runner (`test --lib`,
#                                     `run -- check`: tests and binaries run under qemu-user)
#
# TARGET is aarch64-unknown-linux-gnu (Pi 3/4/5, 64-bit OS) or armv7-unknown-linux-gnueabihf
# (Pi 2/3/Zero 2, 32-bit OS). The binaries land in target/TARGET/release/knockgate.
#
# Where the target's libpcap comes from:
# - aarch64: Debian multiarch (`dpkg --add-architecture arm64`, `libpcap-dev:arm64`). The
#   binary runs on Debian 12 and 13 alike (a 64-bit time_t either way; Debian 13's
#   libpcap0.8t64 provides libpcap0.8 on arm64).
# - armv7: built for Debian 13 (Raspberry Pi OS "trixie"), whose 32-bit ports have a 64-bit
#   time_t everywhere (the t64 transition): its libpcap0.8t64 hands out packet headers with a
#   64-bit struct timeval. So the Rust side is built with the libc crate's 64-bit time_t
#   (`--cfg libc_unstable_gnu_time_bits="64"`: libc's timeval, timespec, time_t and the glibc
#   entry points it links, __clock_gettime64 and the like, become the _TIME_BITS=64 ones), and
#   vendor/ holds the three crates that needed a patch for it (vendor/README.md). The libpcap,
#   the libraries it links (libdbus, libsystemd, ...) and trixie's libc6 (for qemu-arm: the
#   libraries are newer than the cross toolchain's glibc) are fetched with a private apt
#   configuration under target/ (armhf only, trixie + trixie-updates; dpkg is not told about
#   armhf: multiarch for armhf fails here at `apt-get update`, the security mirror's index) and
#   unpacked with `dpkg-deb -x` into a sysroot that pkg-config, the linker (`-rpath-link`) and
#   qemu-arm (`-L`) are pointed at. The link itself uses Debian 12's libc6-dev-armhf-cross
#   (glibc 2.36, older than trixie's 2.41), so the binary asks for no newer glibc than that.
# The linker, pkg-config and runner settings are environment variables set here, not
# .cargo/config.toml, so `cross` (which sets its own) and native builds are unaffected.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
ROOT=$PWD
ARMHF_APT=$ROOT/target/arm-sysroot/armhf-apt
ARMHF_SYSROOT=$ROOT/target/arm-sysroot/armhf
# The armhf libraries the link and qemu-arm need, from Debian 13: libpcap and its runtime
# dependencies, recursively (`apt-cache depends --recurse libpcap0.8t64`), libdbus-1-dev and
# libsystemd-dev for dbus-1.pc and libsystemd.pc (libpcap.pc requires the first, which requires
# the second; pkg-config fails without them), and libc6/libgcc-s1 (the runtime under qemu-arm;
# the link takes the cross packages').
ARMHF_SUITE=trixie
ARMHF_DEBS=(libpcap0.8t64 libpcap0.8-dev libdbus-1-3 libdbus-1-dev libsystemd0 libsystemd-dev
    libcap2 libc6 libgcc-s1)

log() { echo "cross.sh: $*" >&2; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

apt_install() {
    local missing=() p
    for p in "$@"; do installed "$p" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return
    log "installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
}

# apt-get/apt-cache with the private armhf configuration (its own lists, cache and empty dpkg
# status; the system's keyring).
armhf_apt() {
    local tool=$1
    shift
    "$tool" -o Dir="$ARMHF_APT" -o Dir::State::status="$ARMHF_APT/status" \
        -o Dir::Etc::trusted=/etc/apt/trusted.gpg -o Dir::Etc::trustedparts=/etc/apt/trusted.gpg.d \
        -o APT::Architecture=armhf -o APT::Architectures=armhf -o APT::Sandbox::User=root \
        -o Debug::NoLocking=1 "$@"
}

armhf_sysroot() {
    local stamp=$ARMHF_SYSROOT/.debs
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$ARMHF_SUITE ${ARMHF_DEBS[*]}" ]; then
        return
    fi
    log "building the armhf sysroot in $ARMHF_SYSROOT"
    rm -rf "$ARMHF_APT" "$ARMHF_SYSROOT"
    mkdir -p "$ARMHF_APT"/{etc/apt/apt.conf.d,etc/apt/preferences.d,etc/apt/sources.list.d} \
        "$ARMHF_APT"/var/lib/apt/lists/partial "$ARMHF_APT"/var/cache/apt/archives/partial \
        "$ARMHF_APT/debs" "$ARMHF_SYSROOT"
    touch "$ARMHF_APT/status"
    local key=/usr/share/keyrings/debian-archive-keyring.gpg
    cat >"$ARMHF_APT/etc/apt/sources.list" <<EOF
deb [arch=armhf signed-by=$key] http://deb.debian.org/debian $ARMHF_SUITE main
deb [arch=armhf signed-by=$key] http://deb.debian.org/debian $ARMHF_SUITE-updates main
EOF
    armhf_apt apt-get update -qq
    (cd "$ARMHF_APT/debs" && armhf_apt apt-get download -qq "${ARMHF_DEBS[@]}")
    local deb
    for deb in "$ARMHF_APT"/debs/*.deb; do dpkg-deb -x "$deb" "$ARMHF_SYSROOT"; done
    # Debian 13 is /usr-merged; the loader is asked for as /lib/ld-linux-armhf.so.3.
    [ -e "$ARMHF_SYSROOT/lib" ] || ln -s usr/lib "$ARMHF_SYSROOT/lib"
    # pcap's build script reruns only when its variables change: forget its old probe.
    rm -rf "$ROOT"/target/armv7-unknown-linux-gnueabihf/*/build/pcap-*
    echo "$ARMHF_SUITE ${ARMHF_DEBS[*]}" >"$stamp"
}

setup() {
    if [ "$(id -u)" != 0 ]; then
        log "run as root (it installs Debian packages)"
        exit 1
    fi
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        log "adding the arm64 dpkg architecture"
        dpkg --add-architecture arm64
        apt-get -o DPkg::Lock::Timeout=600 update -qq
    fi
    # qemu-user (bookworm main, 7.2) provides qemu-aarch64 and qemu-arm; no backports needed.
    apt_install pkg-config gcc-aarch64-linux-gnu libc6-dev-arm64-cross libpcap-dev:arm64 \
        gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user
    local installed_targets
    installed_targets=$(rustup target list --installed)
    local t
    for t in "${TARGETS[@]}"; do
        grep -qx "$t" <<<"$installed_targets" || rustup target add "$t"
    done
    armhf_sysroot
}

# Exports the variables cargo, the pcap crate's build script (pkg-config) and the linker need for
# TARGET, and the qemu-user runner for `cargo test`/`cargo run`. For tests under qemu it also
# sets KNOCKGATE_TEST_RUNNER (tests/it/cli.rs runs the built binary through it: there is no binfmt
# here) and KNOCKGATE_TEST_NO_NETNS (the namespace tests skip, saying this reason: qemu-user
# does not emulate the packet-socket options live capture needs; they run natively).
target_env() {
    local key=${1//-/_}
    local KEY=${key^^}
    local runner
    case "$1" in
    aarch64-unknown-linux-gnu)
        export "CARGO_TARGET_${KEY}_LINKER=aarch64-linux-gnu-gcc"
        export "CC_${key}=aarch64-linux-gnu-gcc"
        export "AR_${key}=aarch64-linux-gnu-ar"
        export "PKG_CONFIG_ALLOW_CROSS_${key}=1"
        export "PKG_CONFIG_LIBDIR_${key}=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig"
        # `-L /`: without it qemu hangs in pthread_create once libc6:arm64 is installed.
        runner="qemu-aarch64 -L /"
        ;;
    armv7-unknown-linux-gnueabihf)
        local lib=$ARMHF_SYSROOT/usr/lib/arm-linux-gnueabihf
        local lib2=$ARMHF_SYSROOT/lib/arm-linux-gnueabihf
        export "CARGO_TARGET_${KEY}_LINKER=arm-linux-gnueabihf-gcc"
        export "CC_${key}=arm-linux-gnueabihf-gcc"
        export "AR_${key}=arm-linux-gnueabihf-ar"
        export "PKG_CONFIG_LIBDIR_${key}=$lib/pkgconfig"
        export "PKG_CONFIG_SYSROOT_DIR_${key}=$ARMHF_SYSROOT"
        # A 64-bit time_t, as Debian 13's armhf libraries have (above). The cfg also keeps
        # rppal out (Cargo.toml). Build scripts run on the host and do not see it.
        # --allow-shlib-undefined: Debian 13's libraries ask for glibc 2.38+ symbols that the
        # cross toolchain's 2.36 lacks; the target's 2.41 has them, and the binary is linked
        # with -z now, so one run on Debian 13 (scripts/test-deb.sh) resolves every one.
        export "CARGO_TARGET_${KEY}_RUSTFLAGS=-C link-arg=-Wl,-rpath-link,$lib:$lib2 -C link-arg=-Wl,--allow-shlib-undefined --cfg libc_unstable_gnu_time_bits=\"64\""
        # Everything from the Debian 13 sysroot, libc included.
        runner="qemu-arm -L $ARMHF_SYSROOT"
        ;;
    *)
        log "unknown target $1 (known: ${TARGETS[*]})"
        exit 2
        ;;
    esac
    export "CARGO_TARGET_${KEY}_RUNNER=$runner"
    export KNOCKGATE_TEST_RUNNER="$runner"
    export KNOCKGATE_TEST_NO_NETNS="ARM run under qemu-user ($1): qemu does not emulate the \
packet-socket options live capture needs; the namespace tests run natively (scripts/test.sh)"
}

# `cargo SUBCOMMAND --target TARGET ARGS...`, in a subshell so that targets don't see each
# other's variables.
cargo_for() {
    local target=$1 subcommand=$2
    shift 2
    (target_env "$target" && cargo "$subcommand" --target "$target" "$@")
}

build() {
    local t
    for t in "${TARGETS[@]}"; do
        log "cargo build --release --target $t"
        cargo_for "$t" build --release --locked --bins
    done
    for t in "${TARGETS[@]}"; do
        local bin=target/$t/release/knockgate
        printf 'cross.sh: %s: %s bytes (%s)\n' "$bin" "$(stat -c %s "$bin")" \
            "$(file -b "$bin" 2>/dev/null | cut -d, -f1-2 || true)"
    done
}

case "${1:-all}" in
all)
    setup
    build
    ;;
setup) setup ;;
build) build ;;
cargo)
    [ $# -ge 3 ] || {
        log "usage: $0 cargo TARGET SUBCOMMAND [ARGS...]"
        exit 2
    }
    target=$2
    shift 2
    cargo_for "$target" "$@"
    ;;
*)
    log "usage: $0 [all|setup|build|cargo TARGET SUBCOMMAND [ARGS...]]"
    exit 2
    ;;
esac
