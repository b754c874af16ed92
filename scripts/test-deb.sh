#!/usr/bin/env bash
# The Debian package, installed for real in a throwaway Debian 12 root (mmdebstrap minbase,
# amd64) as Raspberry Pi OS users install it, then upgraded, removed and purged. As root.
#
#   scripts/test-deb.sh          builds the amd64 package twice (VERSION-1 and VERSION-2) with
#                                scripts/deb.sh, then runs every step below; ~4 min
#
# The root's network is a namespace of its own (ip netns exec ... chroot ...) for every step
# that touches the firewall, so the host's is never changed; apt reaches Debian's mirror
# (the dependencies) from the host's network. Steps, each checked by what it leaves behind:
#   1. `dpkg -i` (fails: dependencies missing) + `apt-get -f install`: Depends is exactly
#      iptables, libc6, libpcap0.8 (Suggests: nftables); the binary, the unit, the conffile (root:knockgate 640),
#      the man pages and completions are in place; the system user exists (nologin);
#   2. the first start as the unit runs it: `firstboot` writes the note in /etc/knockgate (no
#      boot partition here; mode 600), `check` passes as the knockgate user, and the daemon
#      (in the namespace, a veth to a client namespace) opens SSH for a client that knocks the
#      sequence written in the note: a rule for the client's address in KNOCKD;
#   3. upgrade to VERSION-2 with the config edited: the edit and the state directory kept;
#      3b. with an owner's nftables ruleset and `backend = "nftables"`, a knock adds the
#      client's element to knockgate's set (the daemon is then SIGKILLed, the door left open);
#   4. `apt-get remove`: the chain and its jump gone, INPUT's other rules and policy as they
#      were, knockgate's sets and rules gone and the owner's nftables ruleset as it was, the
#      config kept;
#   5. `dpkg --purge`: /etc/knockgate and /var/lib/knockgate gone.
# Meanwhile, side by side (each mostly one core: dpkg and apt under qemu-user), the arm64 and
# armhf packages (target/deb/knockgate_VERSION-1_ARCH.deb; built with scripts/deb.sh if
# missing) in Debian 13 (trixie) minbase roots of their own architecture, as a Raspberry Pi OS
# user installs them: 6. `apt-get install ./knockgate_….deb` pulls in libpcap0.8t64 (armhf:
# the 64-bit time_t library, no libpcap0.8 exists there); `knockgate check` passes on
# image/replay-check/knockgate.toml, and `knockgate replay` of image/replay-check/knocks.pcap
# (libpcap reads it and hands out its packet headers: a timeval, caplen, len) prints byte for
# byte what the amd64 build prints. The two roots' logs: target/test-deb-ARCH.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$PWD

log() { echo "test-deb.sh: $*" >&2; }
fail() {
    log "FAIL: $*"
    exit 1
}

[ "$(id -u)" = 0 ] || { log "run as root (mmdebstrap, chroot, network namespaces)"; exit 1; }
command -v mmdebstrap >/dev/null || {
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends mmdebstrap >/dev/null
}

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
log "packages $version-1 and $version-2 (amd64)"
DEB_VERSION=$version-2 bash scripts/deb.sh amd64
DEB_VERSION=$version-1 bash scripts/deb.sh amd64
v1=$ROOT_DIR/target/deb/knockgate_$version-1_amd64.deb
v2=$ROOT_DIR/target/deb/knockgate_$version-2_amd64.deb

work=$(mktemp -d /tmp/knockgate-deb.XXXXXX)
root=$work/root
ns=kgdeb$$
client=kgdebc$$
daemon_pid=
arm_pids=()
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    local p
    for p in "${arm_pids[@]}"; do
        kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    for r in "$work"/trixie-*; do umount "$r/proc" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
    ip netns del "$client" 2>/dev/null || true
    umount "$root/proc" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# --- 6. Debian 13 roots, arm64 and armhf (in the background) ---------------------------
# ARCH: the package installed with apt into a trixie root of that architecture, then check and
# replay compared with the amd64 build's. Its log is target/test-deb-ARCH.log.
debian13() {
    local arch=$1
    local r=$work/trixie-$arch deb=$ROOT_DIR/target/deb/knockgate_$version-1_$arch.deb
    echo "$arch: Debian 13 minbase root (mmdebstrap, qemu-user)"
    mmdebstrap --quiet --variant=minbase --mode=root --architectures="$arch" trixie "$r" \
        "deb http://deb.debian.org/debian trixie main" \
        "deb http://deb.debian.org/debian trixie-updates main" \
        "deb http://deb.debian.org/debian-security trixie-security main"
    mount -t proc proc "$r/proc"
    cp /etc/resolv.conf "$r/etc/resolv.conf"
    cp "$deb" "$r/tmp/"
    echo "$arch: apt-get install ./$(basename "$deb")"
    chroot "$r" apt-get update -q
    DEBIAN_FRONTEND=noninteractive chroot "$r" apt-get install -y -q \
        "/tmp/$(basename "$deb")" || { echo "$arch: FAIL: apt-get install"; return 1; }
    local pcap_pkg
    pcap_pkg=$(chroot "$r" dpkg-query -W -f="\${Package} \${Version} \${Architecture}\n" \
        'libpcap0.8*' 2>/dev/null | awk '$2 != ""') || true
    echo "$arch: installed knockgate $(chroot "$r" dpkg-query -W -f="\${Version}" knockgate), $pcap_pkg"
    if [ "$arch" = armhf ] && ! grep -q '^libpcap0.8t64 ' <<<"$pcap_pkg"; then
        echo "$arch: FAIL: libpcap0.8t64 was not installed (got: $pcap_pkg)"
        return 1
    fi
    local summary
    summary=$(bash image/replay-check/run.sh "$r" "$ROOT_DIR/target/release/knockgate") ||
        { echo "$arch: FAIL: the replay check (above)"; return 1; }
    echo "$arch: ok: installed with apt on Debian 13, check passes, replay as on amd64 ($summary)"
    umount "$r/proc"
}
arm_arches=(arm64 armhf)
for arch in "${arm_arches[@]}"; do
    [ -f "target/deb/knockgate_$version-1_$arch.deb" ] && continue
    log "no $arch package: scripts/cross.sh setup, scripts/deb.sh arm64 armhf"
    bash scripts/cross.sh setup >/dev/null
    bash scripts/deb.sh arm64 armhf
    break
done
# Foreign maintainer scripts and binaries run through binfmt_misc (qemu-user-static).
bash image/build.sh --deps-only >/dev/null
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-arm 2>/dev/null || update-binfmts --enable qemu-arm
arch-test armhf >/dev/null || fail "armhf binaries do not run here (binfmt_misc + qemu-user-static)"
mkdir -p target
for arch in "${arm_arches[@]}"; do
    setsid bash -c "set -euo pipefail; $(declare -f debian13); work=$work ROOT_DIR=$ROOT_DIR version=$version debian13 $arch" \
        >"target/test-deb-$arch.log" 2>&1 &
    arm_pids+=($!)
done

log "Debian 12 minbase root (mmdebstrap)"
mmdebstrap --quiet --variant=minbase --mode=root bookworm "$root" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
mount -t proc proc "$root/proc"
cp /etc/resolv.conf "$root/etc/resolv.conf"
in_root() { chroot "$root" "$@"; }
# In the root, on its own network.
in_ns() { ip netns exec "$ns" chroot "$root" "$@"; }
ipt() { ip netns exec "$ns" iptables -w 5 "$@"; }

ip netns add "$ns"
ip netns add "$client"
ip link add kgd$$ netns "$ns" type veth peer name kgc$$ netns "$client"
ip -n "$ns" addr add 10.77.0.1/24 dev kgd$$
ip -n "$client" addr add 10.77.0.2/24 dev kgc$$
ip -n "$ns" link set lo up
ip -n "$ns" link set kgd$$ up
ip -n "$client" link set lo up
ip -n "$client" link set kgc$$ up
# An admin's own INPUT rules and policy, which the package must leave as they are.
ipt -P INPUT ACCEPT
ipt -A INPUT -p tcp --dport 2222 -j ACCEPT
input_before=$(ipt -S INPUT)

# --- 1. install --------------------------------------------------------------------------
log "1. install: dpkg -i, then apt-get -f install"
cp "$v1" "$v2" "$root/tmp/"
before=$(in_root dpkg-query -W -f="\${Package}\n" | sort)
if in_root dpkg -i "/tmp/$(basename "$v1")" >"$work/dpkg-i.log" 2>&1; then
    fail "dpkg -i succeeded without its dependencies installed"
fi
in_root apt-get update -qq
# On the host's network: apt downloads the dependencies (no firewall is touched: without
# systemd running, the unit is enabled but not started).
DEBIAN_FRONTEND=noninteractive in_root apt-get -f install -y -qq >"$work/apt-f.log" 2>&1 || {
    cat "$work/apt-f.log" >&2
    fail "apt-get -f install"
}
[ "$(in_root dpkg-query -W -f="\${Status}" knockgate)" = "install ok installed" ] ||
    fail "knockgate is not installed"
depends=$(dpkg-deb -f "$v1" Depends | tr ',' '\n' | sed 's/ *(.*//; s/^ *//' | sort | tr '\n' ' ')
[ "$depends" = "iptables libc6 libpcap0.8 " ] || fail "Depends: $depends"
[ "$(dpkg-deb -f "$v1" Suggests)" = nftables ] || fail "Suggests: $(dpkg-deb -f "$v1" Suggests)"
added=$(comm -13 <(echo "$before") <(in_root dpkg-query -W -f="\${Package}\n" | sort) | tr '\n' ' ')
log "   installed: $added"
for f in /usr/sbin/knockgate /usr/lib/systemd/system/knockgate.service \
    /usr/share/man/man8/knockgate.8.gz /usr/share/man/man8/knockgate-run.8.gz \
    /usr/share/bash-completion/completions/knockgate /usr/share/zsh/vendor-completions/_knockgate \
    /usr/share/doc/knockgate/copyright; do
    [ -e "$root$f" ] || fail "$f missing"
done
grep -q '^ExecStart=/usr/sbin/knockgate run$' "$root/usr/lib/systemd/system/knockgate.service" ||
    fail "the unit does not run /usr/sbin/knockgate"
gzip -dc "$root/usr/share/man/man8/knockgate.8.gz" | grep -q '^\.TH knockgate 8' || fail "knockgate.8 is no man page"
in_root dpkg-query --control-show knockgate conffiles | grep -qx '/etc/knockgate/knockgate.toml' ||
    fail "the config is not a conffile"
# (stat in the root: its own user and group names)
[ "$(in_root stat -c '%U:%G %a' /etc/knockgate/knockgate.toml)" = "root:knockgate 640" ] ||
    fail "config owner/mode: $(in_root stat -c '%U:%G %a' /etc/knockgate/knockgate.toml)"
user=$(in_root getent passwd knockgate) || fail "no knockgate user"
uid=$(cut -d: -f3 <<<"$user")
if [ "$uid" -ge 1000 ] || [ "$(cut -d: -f7 <<<"$user")" != /usr/sbin/nologin ]; then
    fail "user: $user"
fi
grep -q "knockgate-sequence.txt" "$work/apt-f.log" || fail "the install did not say where the note goes"

# --- 2. first start ----------------------------------------------------------------------
log "2. first start as the unit runs it: firstboot, check, run; a client knocks"
in_root knockgate firstboot --config /etc/knockgate/knockgate.toml \
    --boot-dir /boot/firmware --boot-dir /etc/knockgate >"$work/firstboot.log"
note=$root/etc/knockgate/knockgate-sequence.txt
[ -f "$note" ] || fail "no note in /etc/knockgate"
[ "$(in_root stat -c '%U %a' /etc/knockgate/knockgate-sequence.txt)" = "root 600" ] ||
    fail "note owner/mode: $(in_root stat -c '%U %a' /etc/knockgate/knockgate-sequence.txt)"
read -r -a ports <<<"$(sed -n 's/^Sequence: *\([0-9]*\), \([0-9]*\), \([0-9]*\) .*/\1 \2 \3/p' "$note")"
[ ${#ports[@]} = 3 ] || fail "no sequence in the note"
for p in "${ports[@]}"; do
    ! grep -qw "$p" "$work/firstboot.log" "$work/apt-f.log" || fail "a port was printed"
done
chroot --userspec=knockgate:knockgate "$root" knockgate check >/dev/null ||
    fail "knockgate check fails as the knockgate user"
# (not through in_ns: a backgrounded function is a subshell, whose pid is not the daemon's)
ip netns exec "$ns" chroot "$root" knockgate run >"$work/run1.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 50); do
    ipt -S INPUT 2>/dev/null | grep -qx -- '-A INPUT -j KNOCKD' && break
    sleep 0.2
done
ipt -S INPUT | grep -qx -- '-A INPUT -j KNOCKD' || { cat "$work/run1.log" >&2; fail "no jump to KNOCKD"; }
sleep 1
ip netns exec "$client" "$ROOT_DIR/target/release/knockgate" knock 10.77.0.1 "${ports[@]}"
for _ in $(seq 1 50); do
    ipt -S KNOCKD | grep -q -- '-s 10.77.0.2/32' && break
    sleep 0.1
done
ipt -S KNOCKD | grep -q -- '-s 10.77.0.2/32 .*--dports 22 .*-j ACCEPT' ||
    { cat "$work/run1.log" >&2; fail "the knock opened nothing: $(ipt -S KNOCKD)"; }
kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" || status=$?
[ "$status" = 0 ] || { tail -5 "$work/run1.log" >&2; fail "the daemon exited $status on SIGTERM"; }
daemon_pid=
ls -A "$root/var/lib/knockgate" >/dev/null || fail "no state directory"
state_before=$(ls -A "$root/var/lib/knockgate")

# --- 3. upgrade --------------------------------------------------------------------------
log "3. upgrade to $version-2 with the config edited"
sed -i 's/^seq_timeout = "10s"$/seq_timeout = "12s"/' "$root/etc/knockgate/knockgate.toml"
edited=$(cat "$root/etc/knockgate/knockgate.toml")
DEBIAN_FRONTEND=noninteractive in_ns dpkg -i "/tmp/$(basename "$v2")" >"$work/upgrade.log" 2>&1 ||
    { cat "$work/upgrade.log" >&2; fail "upgrade"; }
[ "$(in_root dpkg-query -W -f="\${Version}" knockgate)" = "$version-2" ] || fail "not upgraded"
[ "$(cat "$root/etc/knockgate/knockgate.toml")" = "$edited" ] || fail "the edited config was not kept"
[ "$(ls -A "$root/var/lib/knockgate")" = "$state_before" ] || fail "the state directory changed"

# --- 3b. the nftables backend ------------------------------------------------------------
log "3b. the nftables backend on an owner's nftables ruleset: a knock adds an element"
DEBIAN_FRONTEND=noninteractive in_root apt-get install -y -qq --no-install-recommends nftables \
    >"$work/nftables.log" 2>&1 || { cat "$work/nftables.log" >&2; fail "apt-get install nftables"; }
nft_ns() { ip netns exec "$ns" chroot "$root" nft "$@"; }
printf '%s\n' 'table inet filter {' \
    ' chain input { type filter hook input priority filter; policy drop; iif lo accept; ct state established,related accept; }' \
    '}' | ip netns exec "$ns" chroot "$root" nft -f -
owner_before=$(nft_ns list ruleset)
sed -i 's/^backend = "iptables"$/backend = "nftables"/' "$root/etc/knockgate/knockgate.toml"
grep -q '^backend = "nftables"$' "$root/etc/knockgate/knockgate.toml" || fail "no backend line to edit"
ip netns exec "$ns" chroot "$root" knockgate run >"$work/run-nft.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 50); do
    nft_ns list set inet filter knockgate_allow4 >/dev/null 2>&1 && break
    sleep 0.2
done
sleep 1
ip netns exec "$client" "$ROOT_DIR/target/release/knockgate" knock 10.77.0.1 "${ports[@]}"
for _ in $(seq 1 50); do
    nft_ns list set inet filter knockgate_allow4 2>/dev/null | grep -q '10.77.0.2 . tcp . 22 ' && break
    sleep 0.1
done
nft_ns list set inet filter knockgate_allow4 | grep -q '10.77.0.2 . tcp . 22 ' ||
    { cat "$work/run-nft.log" >&2; fail "the knock added no element: $(nft_ns list ruleset)"; }
kill -KILL "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
daemon_pid=

# --- 4. remove ---------------------------------------------------------------------------
log "4. apt-get remove: the chain and its jump go, nothing else"
ipt -S KNOCKD >/dev/null || fail "the chain is gone before the removal"
DEBIAN_FRONTEND=noninteractive in_ns apt-get remove -y -qq knockgate >"$work/remove.log" 2>&1 ||
    { cat "$work/remove.log" >&2; fail "apt-get remove"; }
for family in iptables ip6tables; do
    if ip netns exec "$ns" "$family" -w 5 -S | grep -q KNOCKD; then
        fail "$family still has KNOCKD: $(ip netns exec "$ns" "$family" -S)"
    fi
done
[ "$(ipt -S INPUT)" = "$input_before" ] || fail "INPUT changed: $(ipt -S INPUT)"
# The owner's nftables ruleset as it was before knockgate's sets and rules (and the open
# door a SIGKILL left in them) went in; iptables-nft's own tables set aside.
owner_after=$(ip netns exec "$ns" nft list table inet filter)
[ "$owner_after" = "$(sed -n '/^table inet filter {/,/^}/p' <<<"$owner_before")" ] ||
    fail "the owner's nftables ruleset changed: $owner_after"
[ ! -e "$root/usr/sbin/knockgate" ] || fail "the binary is still there"
[ -f "$root/etc/knockgate/knockgate.toml" ] || fail "remove deleted the config"

# --- 5. purge ----------------------------------------------------------------------------
log "5. dpkg --purge"
in_root dpkg --purge knockgate >"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; fail "purge"; }
[ ! -e "$root/etc/knockgate" ] || fail "/etc/knockgate is still there: $(ls -A "$root/etc/knockgate")"
[ ! -e "$root/var/lib/knockgate" ] || fail "/var/lib/knockgate is still there"
log "ok: install, first start and a knock, upgrade, remove, purge"

log "6. waiting for the Debian 13 roots (arm64, armhf)"
status=0
for i in "${!arm_arches[@]}"; do
    arch=${arm_arches[$i]}
    s=0
    wait "${arm_pids[$i]}" || s=$?
    grep -E "^$arch: (ok|FAIL|installed)" "target/test-deb-$arch.log" >&2 || true
    [ "$s" = 0 ] || { log "FAIL: $arch (target/test-deb-$arch.log):"; tail -n 30 "target/test-deb-$arch.log" >&2; status=1; }
done
arm_pids=()
[ "$status" = 0 ] || exit 1
log "ok: the arm64 and armhf packages on Debian 13"
