#!/usr/bin/env bash
# The firmware image's end-to-end test: boots the SD-card image in qemu-system-aarch64
# (-M virt, TCG) with its network on a tap device inside a test network namespace, and checks
# from that namespace, as a user on the LAN would:
#
#   1. the first boot wrote knockgate-sequence.txt to the card's FAT partition (read from the
#      image file with mtools, as from a PC), and the status page never shows the sequence;
#   2. port 22 is closed (no answer), also from an address outside the LAN ranges;
#   3. the knock command written in that file opens it: an SSH login with the key put in
#      authorized_keys on the boot partition works, and shows knockgate running under systemd
#      as its own user with only CAP_NET_RAW and CAP_NET_ADMIN, and the rule in KNOCKD;
#   4. the opening is for the knocker only: port 22 stays closed from the other address;
#   5. after the door's duration, port 22 is closed again (the SSH session opened before
#      stays up: ESTABLISHED is accepted);
#   6. the status page answers from the LAN (the door, the knocker) and not from outside it;
#   7. after a power cut (qemu killed), the card boots again, firstboot leaves the sequence file
#      alone, port 22 is closed, and the same knock opens it.
# It prints the time from power-on to knock-ready (/healthz 200: the capture is running).
#
#   image/test-boot.sh IMAGE [KNOCKGATE]     (as root; KNOCKGATE: a native knockgate binary,
#                                              default target/debug/knockgate, built if missing)
#   image/test-boot.sh --deps-only           only install what it needs (qemu-system-arm, ...)
#
# Traffic stays in the namespace (10.99.0.0/24, 198.51.100.0/24 and fd99::/64 on the tap).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DEPS_ONLY=no
[ "${1:-}" != --deps-only ] || DEPS_ONLY=yes
IMAGE=
[ "$DEPS_ONLY" = yes ] || IMAGE=$(realpath "${1:?usage: image/test-boot.sh IMAGE [KNOCKGATE] | --deps-only}")
CLIENT=${2:-$ROOT/target/debug/knockgate}
NS=kgimg$$
GUEST=10.99.0.10
HOST=10.99.0.1
OUTSIDE=198.51.100.1
BOOT_LIMIT=${KNOCKGATE_BOOT_LIMIT:-420}
WORK=$(mktemp -d /tmp/knockgate-boot.XXXXXX)
QEMU_PID=
DNSMASQ_PID=

log() { echo "test-boot: [$((SECONDS - t0)) s] $*" >&2; }
fail() {
    echo "test-boot: FAIL: $*" >&2
    if [ -s "$WORK/console.log" ]; then
        echo "---- last 60 lines of the guest console ----" >&2
        tail -n 60 "$WORK/console.log" >&2
    fi
    exit 1
}
cleanup() {
    if [ -n "$QEMU_PID" ]; then kill -KILL "$QEMU_PID" 2>/dev/null || true; fi
    if [ -n "$DNSMASQ_PID" ]; then kill "$DNSMASQ_PID" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    if [ -d "$ROOT/target/artifacts" ] && [ -s "$WORK/console.log" ]; then
        cp "$WORK/console.log" "$ROOT/target/artifacts/image-console.log"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
t0=$SECONDS

# --- tools ------------------------------------------------------------------------------------
need=()
command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm ipxe-qemu)
command -v mtype >/dev/null || need+=(mtools)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v ssh >/dev/null || need+=(openssh-client)
command -v curl >/dev/null || need+=(curl)
command -v sfdisk >/dev/null || need+=(fdisk)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    # qemu-system from bookworm-backports: the machine's qemu-utils comes from there, and
    # bookworm's qemu-system-common would not go with it.
    if [ ! -e /etc/apt/sources.list.d/bookworm-backports.sources ]; then
        cat >/etc/apt/sources.list.d/bookworm-backports.sources <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports "${need[@]}" >/dev/null
fi
[ "$DEPS_ONLY" = no ] || exit 0
if [ ! -x "$CLIENT" ]; then
    log "building the native knockgate (the knock client)"
    cargo build --locked --quiet
fi

# --- the card: a copy, with the owner's SSH key put on the boot partition as from a PC ----------
cp --sparse=always "$IMAGE" "$WORK/card.img"
CARD=$WORK/card.img
boot_offset=$(sfdisk -J "$CARD" | python3 -c 'import json,sys; t=json.load(sys.stdin)["partitiontable"]; print(t["partitions"][0]["start"] * t.get("sectorsize", 512))')
FAT="$CARD@@$boot_offset"
export MTOOLS_SKIP_CHECK=1
mcopy -i "$FAT" ::vmlinuz "$WORK/vmlinuz"
mcopy -i "$FAT" ::initrd.img "$WORK/initrd.img"
ssh-keygen -q -t ed25519 -N "" -f "$WORK/id" -C knockgate-test
mcopy -i "$FAT" "$WORK/id.pub" ::authorized_keys
if mtype -i "$FAT" ::knockgate-sequence.txt >/dev/null 2>&1; then
    fail "the image already holds a knock sequence: every card must draw its own"
fi

# --- the LAN: a namespace with a tap, DHCP and router advertisements ----------------------------
ip netns add "$NS"
nsx() { ip netns exec "$NS" "$@"; }
nsx ip link set lo up
nsx ip tuntap add dev tap0 mode tap
nsx ip addr add "$HOST/24" dev tap0
nsx ip addr add "$OUTSIDE/24" dev tap0
nsx ip addr add fd99::1/64 dev tap0
nsx ip link set tap0 up
# (`ip netns exec` directly, not through nsx: $! must be the daemon's pid, not a subshell's.)
ip netns exec "$NS" dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces --interface=tap0 \
    --except-interface=lo --dhcp-range="$GUEST,$GUEST,255.255.255.0,1h" \
    --dhcp-option=option:router,"$HOST" --dhcp-leasefile="$WORK/leases" --pid-file="$WORK/dnsmasq.pid" \
    --log-facility="$WORK/dnsmasq.log" --port=0 &
DNSMASQ_PID=$!

# --- power on ----------------------------------------------------------------------------------
# Starts the emulated Pi on the card, with its console appended to console.log.
power_on() {
    boot_t0=$SECONDS
    ip netns exec "$NS" qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 \
        -display none -monitor none -chardev "file,id=console,path=$WORK/console.log,append=on" \
        -serial chardev:console \
        -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" \
        -append "console=ttyAMA0 root=LABEL=kgroot rootwait net.ifnames=0 fsck.repair=yes" \
        -drive "file=$CARD,format=raw,if=none,id=card,cache=writeback" -device virtio-blk-pci,drive=card \
        -netdev tap,id=lan,ifname=tap0,script=no,downscript=no \
        -device virtio-net-pci,netdev=lan,mac=52:54:00:4b:47:01 \
        -device virtio-rng-pci &
    QEMU_PID=$!
}

# HTTP GET from the namespace, from an address; prints "CODE BODY" (000 when no answer).
http() { # SOURCE PATH [MAXTIME]
    nsx curl -s -m "${3:-3}" --interface "$1" -o "$WORK/body" -w '%{http_code}' \
        "http://$GUEST:8080$2" 2>/dev/null || true
}
# A TCP connection to the guest's port 22 from SOURCE: prints "open" or "closed".
port22() { # SOURCE
    if nsx python3 - "$1" "$GUEST" <<'EOF'; then echo open; else echo closed; fi
import socket, sys
s = socket.socket()
s.settimeout(3)
s.bind((sys.argv[1], 0))
try:
    s.connect((sys.argv[2], 22))
    banner = s.recv(64)
    sys.exit(0 if banner.startswith(b"SSH-2.0-") else 1)
except OSError:
    sys.exit(1)
EOF
}

# Waits for knockgate to be knock-ready (/healthz 200: the capture runs); sets $ready (seconds
# since power-on).
wait_ready() {
    ready=
    while [ $((SECONDS - boot_t0)) -lt "$BOOT_LIMIT" ]; do
        kill -0 "$QEMU_PID" 2>/dev/null || fail "qemu exited during boot"
        if [ "$(http "$HOST" /healthz 2)" = 200 ]; then
            ready=$((SECONDS - boot_t0))
            return
        fi
        sleep 1
    done
    fail "knockgate was not ready ($HOST -> http://$GUEST:8080/healthz) within $BOOT_LIMIT s"
}

log "first boot of $(basename "$IMAGE") in qemu-system-aarch64 (-M virt, TCG)"
power_on
wait_ready
first_ready=$ready
echo "test-boot: boot-to-knock-ready: $ready s (first boot: power-on to /healthz 200, qemu TCG on this machine)"

# --- 1. the first boot's sequence, read from the card as from a PC -----------------------------
mtype -i "$FAT" ::knockgate-sequence.txt >"$WORK/sequence.txt" 2>/dev/null ||
    fail "knockgate-sequence.txt is not on the boot partition"
knock_line=$(grep -m1 '^ *knockgate knock ' "$WORK/sequence.txt" | tr -d '\r') ||
    fail "no 'knockgate knock' command in knockgate-sequence.txt"
read -r -a ports <<<"$(echo "$knock_line" | grep -oE '\b[0-9]{4,5}(/tcp)?\b' | sed 's,/tcp,,' | tr '\n' ' ')"
[ ${#ports[@]} = 3 ] || fail "expected 3 ports in '$knock_line', got ${#ports[*]}"
log "first boot drew a 3-port sequence (not printed)"
for path in / /api/status /metrics; do
    code=$(http "$HOST" "$path")
    [ "$code" = 200 ] || fail "status page $path answered $code from the LAN"
    for p in "${ports[@]}"; do
        grep -q "$p" "$WORK/body" && fail "status page $path shows sequence port $p"
    done
done
http "$HOST" /api/status >/dev/null
grep -q '"ssh"' "$WORK/body" || fail "/api/status does not list the ssh door"
log "status page from the LAN: 200, lists the door, shows no sequence port"
code=$(http "$OUTSIDE" /api/status)
[ "$code" = 000 ] || fail "status page answered $code to $OUTSIDE (outside the LAN ranges)"
log "status page from outside the LAN: no answer"

# --- 2. closed before the knock ----------------------------------------------------------------
[ "$(port22 "$HOST")" = closed ] || fail "port 22 answers before any knock"
[ "$(port22 "$OUTSIDE")" = closed ] || fail "port 22 answers $OUTSIDE before any knock"
log "port 22: closed"

# --- 3. knock with the command from the card ---------------------------------------------------
cmd=${knock_line//GATEWAY/$GUEST}
cmd=$(echo "$cmd" | sed -E "s/^ *knockgate /$(printf '%s' "$CLIENT" | sed 's,/,\\/,g') /")
# Knocks with $cmd from the LAN address; true once port 22 answers it (within 10 s).
knock_open() {
    # shellcheck disable=SC2086
    nsx $cmd >/dev/null
    for _ in $(seq 1 20); do
        [ "$(port22 "$HOST")" = open ] && return 0
        sleep 0.5
    done
    return 1
}
log "knocking: knockgate knock $GUEST <3 ports>"
knock_t=$SECONDS
knock_open || fail "port 22 did not open after the knock"
log "port 22: open after the knock ($((SECONDS - knock_t)) s)"

# --- 4. knocker only ---------------------------------------------------------------------------
[ "$(port22 "$OUTSIDE")" = closed ] || fail "port 22 opened for $OUTSIDE too (not the knocker)"
log "port 22 from $OUTSIDE: still closed"

# An SSH login (the key from the boot partition) while the door is open; the session is kept
# open across the door's closing.
mkfifo "$WORK/ssh-in"
nsx ssh -i "$WORK/id" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ConnectTimeout=20 -o BatchMode=yes -o LogLevel=ERROR "root@$GUEST" sh -s \
    <"$WORK/ssh-in" >"$WORK/ssh-out" 2>"$WORK/ssh-err" &
SSH_PID=$!
exec 3>"$WORK/ssh-in"
cat >&3 <<'EOF'
echo "unit: $(systemctl is-active knockgate.service)"
pid=$(systemctl show -P MainPID knockgate.service)
echo "user: $(stat -c %U /proc/$pid)"
grep -E '^(CapEff|CapAmb|NoNewPrivs)' /proc/$pid/status
for ipt in iptables ip6tables; do
    echo "$ipt base: $($ipt -S INPUT | head -2 | tr '\n' ' ')"
done
echo "rules:"
iptables -S KNOCKD
echo "first part done"
EOF
for _ in $(seq 1 60); do
    grep -q "first part done" "$WORK/ssh-out" 2>/dev/null && break
    kill -0 "$SSH_PID" 2>/dev/null || break
    sleep 1
done
grep -q "first part done" "$WORK/ssh-out" || fail "SSH login failed: $(cat "$WORK/ssh-err")"
sed 's/^/test-boot:   guest: /' "$WORK/ssh-out" >&2
grep -qx "unit: active" "$WORK/ssh-out" || fail "knockgate.service is not active"
grep -qx "user: knockgate" "$WORK/ssh-out" || fail "knockgate does not run as the knockgate user"
grep -qE '^CapEff:\s+0000000000003000$' "$WORK/ssh-out" || fail "knockgate's capabilities are not exactly NET_RAW+NET_ADMIN"
grep -qE '^NoNewPrivs:\s+1$' "$WORK/ssh-out" || fail "knockgate runs without NoNewPrivs"
for ipt in iptables ip6tables; do
    grep -qx "$ipt base: -P INPUT DROP -A INPUT -j KNOCKD " "$WORK/ssh-out" ||
        fail "$ipt: INPUT is not policy DROP with the jump to KNOCKD first"
done
grep -qE "^-A KNOCKD -s $HOST/32 .*--dports? 22 .*-j ACCEPT" "$WORK/ssh-out" || fail "no KNOCKD rule for $HOST"
log "SSH login as root with the boot partition's key: knockgate active, user knockgate, CapEff 0x3000; INPUT DROP + KNOCKD jump (v4, v6); the rule in KNOCKD"

code=$(http "$HOST" /api/status)
grep -q "$HOST" "$WORK/body" || fail "the status page does not show the knocker $HOST (code $code)"
log "status page shows the open door for $HOST"

# --- 5. closed again after the door's duration ---------------------------------------------------
# The door's duration, from the image's config (firewall = { ..., duration = "30s" }).
duration=$(sed -nE 's/^firewall = .*duration = "([0-9]+)s".*/\1/p' image/rootfs/etc/knockgate/knockgate.toml)
[ -n "$duration" ] || fail "cannot read the ssh door's duration from image/rootfs/etc/knockgate/knockgate.toml"
closed=
while [ $((SECONDS - knock_t)) -lt $((duration + 20)) ]; do
    if [ $((SECONDS - knock_t)) -ge "$duration" ] && [ "$(port22 "$HOST")" = closed ]; then
        closed=$((SECONDS - knock_t))
        break
    fi
    sleep 1
done
[ -n "$closed" ] || fail "port 22 still open $((duration + 20)) s after the knock (duration ${duration} s)"
log "port 22: closed again $closed s after the knock (door duration $duration s)"
cat >&3 <<'EOF'
echo "still here: $(iptables -S KNOCKD | grep -c -- "-j ACCEPT") rules"
echo second part done
EOF
for _ in $(seq 1 30); do
    grep -q "second part done" "$WORK/ssh-out" && break
    sleep 1
done
grep -q "still here: 0 rules" "$WORK/ssh-out" ||
    fail "the SSH session opened during the door did not survive its closing, or KNOCKD is not empty: $(tail -2 "$WORK/ssh-out")"
exec 3>&-
wait "$SSH_PID" || true
log "the SSH session opened during the door is still up; KNOCKD is empty"

# --- 6. a power cut, and the next boot ----------------------------------------------------------
sha256sum <"$WORK/sequence.txt" >"$WORK/sequence.sha256"
kill -KILL "$QEMU_PID"
wait "$QEMU_PID" 2>/dev/null || true
kill -0 "$QEMU_PID" 2>/dev/null && fail "qemu survived SIGKILL"
[ "$(http "$HOST" /healthz 1)" = 000 ] || fail "the status page still answers after the power cut"
log "power cut (qemu killed: the guest is gone); booting the same card again"
power_on
wait_ready
echo "test-boot: boot-to-knock-ready: $ready s (after a power cut)"
mtype -i "$FAT" ::knockgate-sequence.txt | sha256sum | cmp -s - "$WORK/sequence.sha256" ||
    fail "the second boot changed knockgate-sequence.txt: firstboot must run once"
[ "$(port22 "$HOST")" = closed ] || fail "port 22 answers after the reboot, before any knock"
knock_open || fail "after the power cut, the same knock does not open port 22"
log "after the power cut: same sequence file, 22 closed, the same knock opens it"

echo "test-boot: PASS (boot-to-knock-ready $first_ready s, $ready s after a power cut; whole test $((SECONDS - t0)) s)"
