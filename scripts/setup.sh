#!/usr/bin/env bash
# Installs what knockgate needs to build, run and be tested on Debian 12, as root:
# libpcap (capture), iptables, iproute2 (namespaces), and the knock clients the tests use
# (Debian's knock from the knockd package, nmap, netcat-openbsd, fwknop's client and server for
# SPA; the server only as the tests' reference, not enabled), and headless Chromium with a font
# for the status page's browser test, nftables (the nftables backend's tests) and mosquitto
# with its clients (the MQTT tests start their own broker in a namespace), zbar-tools and
# librsvg2-bin (the phone QR codes decoded by zbarimg, the SVG rendered first). Idempotent.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: run as root (sudo $0)" >&2
    exit 1
fi

packages=(libpcap-dev pkg-config iptables iproute2 knockd nmap netcat-openbsd procps tcpdump
    fwknop-client fwknop-server chromium fonts-dejavu-core nftables mosquitto mosquitto-clients
    zbar-tools librsvg2-bin)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Rust toolchain comes with the machine (rustup); the checks need rustfmt and clippy.
if ! command -v cargo >/dev/null; then
    echo "setup.sh: cargo not found: install Rust with rustup (https://rustup.rs)" >&2
    exit 1
fi
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
echo "setup.sh: ready ($(cargo --version))"
