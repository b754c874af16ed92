#!/usr/bin/env bash
# The replay check: the knockgate installed in ROOT (a Debian root of another architecture,
# run through qemu-user) checks knockgate.toml and replays knocks.pcap from this folder in a
# chroot, and must print byte for byte what REF (the amd64 build) prints. libpcap reads the
# capture and hands out its packet headers (a timeval, caplen, len), so a knockgate built with
# another time_t than ROOT's libpcap replays it differently.
#
#   image/replay-check/run.sh ROOT REF     prints the replay's summary line; nothing stays in ROOT
#
# Used by image/build.sh --replay-check (the card's root) and scripts/test-deb.sh (Debian 13
# roots with the arm64 and armhf packages installed by apt).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${1:?usage: $0 ROOT REF}
ref=${2:?usage: $0 ROOT REF}
fail() {
    echo "replay-check: $*" >&2
    rm -rf "$root/tmp/replay-check"
    exit 1
}
mkdir -p "$root/tmp/replay-check"
cp "$here/knocks.pcap" "$here/knockgate.toml" "$root/tmp/replay-check/"
chroot "$root" /usr/sbin/knockgate check --config /tmp/replay-check/knockgate.toml >/dev/null ||
    fail "knockgate check failed in $root"
want=$("$ref" replay --config "$here/knockgate.toml" "$here/knocks.pcap" 2>&1)
got=$(chroot "$root" /usr/sbin/knockgate replay --config /tmp/replay-check/knockgate.toml \
    /tmp/replay-check/knocks.pcap 2>&1) || { echo "$got" >&2; fail "knockgate replay failed in $root"; }
rm -rf "$root/tmp/replay-check"
if [ "$got" != "$want" ]; then
    echo "replay-check: the knockgate in $root replays the capture differently from $ref (- $ref, + $root):" >&2
    diff <(echo "$want") <(echo "$got") >&2 || true
    exit 1
fi
tail -n 1 <<<"$got"
