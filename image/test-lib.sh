# shellcheck shell=bash
# What the emulated boot tests share (sourced by image/test-boot.sh and image/test-pi.sh): the
# host tools, a copy of the card with files put on its FAT partition as from a PC, a LAN in a
# test network namespace (a tap for QEMU, dnsmasq for DHCP), and the checks a user on that LAN
# makes (HTTP to the status page, a TCP connection to port 22, the knock from the card's note,
# SSH). The caller sets ROOT, CLIENT and NS before sourcing, starts QEMU itself and keeps its
# pid in QEMU_PID (killed by pid at exit).
#
# Traffic stays in the namespace: $HOST (the LAN side), $OUTSIDE (an address outside the LAN
# ranges) and $GUEST, on the tap.

GUEST=10.99.0.10
HOST=10.99.0.1
OUTSIDE=198.51.100.1
BOOT_LIMIT=${KNOCKGATE_BOOT_LIMIT:-420}
WORK=$(mktemp -d /tmp/knockgate-boot.XXXXXX)
QEMU_PID=
DNSMASQ_PID=
CONSOLE_COPY=image-console.log
# Set by the caller's power_on and by wait_ready (read by the caller).
boot_t0=$SECONDS
export ready=
t0=$SECONDS
export MTOOLS_SKIP_CHECK=1

log() { echo "${TEST_NAME:-test}: [$((SECONDS - t0)) s] $*" >&2; }
fail() {
    echo "${TEST_NAME:-test}: FAIL: $*" >&2
    if [ -s "$WORK/console.log" ]; then
        echo "---- last 60 lines of the guest console ----" >&2
        tail -n 60 "$WORK/console.log" >&2
    fi
    if [ -n "${KNOCKGATE_TEST_HOLD:-}" ]; then
        # Debugging: keep the guest running for that many seconds (gx through $WORK/ssh.ctl).
        echo "holding the guest for $KNOCKGATE_TEST_HOLD s: $WORK" >&2
        sleep "$KNOCKGATE_TEST_HOLD"
    fi
    exit 1
}
cleanup() {
    if [ -n "$QEMU_PID" ]; then kill -KILL "$QEMU_PID" 2>/dev/null || true; fi
    if [ -n "$DNSMASQ_PID" ]; then kill "$DNSMASQ_PID" 2>/dev/null || true; fi
    if [ -S "$WORK/ssh.ctl" ]; then ssh -o ControlPath="$WORK/ssh.ctl" -O exit x 2>/dev/null || true; fi
    wait 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    if [ -d "$ROOT/target/artifacts" ] && [ -s "$WORK/console.log" ]; then
        cp "$WORK/console.log" "$ROOT/target/artifacts/$CONSOLE_COPY"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# The host tools: QEMU (from bookworm-backports: the machine's qemu-utils comes from there, and
# bookworm's qemu-system-common would not go with it), mtools, dnsmasq, ssh, curl, sfdisk.
install_deps() {
    local need=()
    command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm ipxe-qemu)
    command -v mtype >/dev/null || need+=(mtools)
    command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
    command -v ssh >/dev/null || need+=(openssh-client)
    command -v curl >/dev/null || need+=(curl)
    command -v sfdisk >/dev/null || need+=(fdisk)
    command -v qemu-img >/dev/null || need+=(qemu-utils)
    [ ${#need[@]} -gt 0 ] || return 0
    log "installing ${need[*]}"
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
}

# Copies IMAGE to $CARD (sparse) and finds its FAT partition ($FAT, for mtools); takes the
# kernel and initrd out of it, as the Pi's firmware would; puts a fresh SSH key on it as
# authorized_keys. Fails if the image already holds a knock sequence.
prepare_card() { # IMAGE
    if [ ! -x "$CLIENT" ]; then
        log "building the native knockgate (the knock client)"
        cargo build --locked --quiet
    fi
    cp --sparse=always "$1" "$WORK/card.img"
    CARD=$WORK/card.img
    local offset
    offset=$(sfdisk -J "$CARD" | python3 -c 'import json,sys; t=json.load(sys.stdin)["partitiontable"]; print(t["partitions"][0]["start"] * t.get("sectorsize", 512))')
    FAT="$CARD@@$offset"
    mcopy -i "$FAT" ::vmlinuz "$WORK/vmlinuz"
    mcopy -i "$FAT" ::initrd.img "$WORK/initrd.img"
    ssh-keygen -q -t ed25519 -N "" -f "$WORK/id" -C knockgate-test
    mcopy -i "$FAT" "$WORK/id.pub" ::authorized_keys
    if mtype -i "$FAT" ::knockgate-sequence.txt >/dev/null 2>&1; then
        fail "the image already holds a knock sequence: every card must draw its own"
    fi
}

# Puts FILE on the card's FAT partition as NAME, as the owner would from a PC.
fat_put() { # FILE NAME
    mcopy -o -i "$FAT" "$1" "::$2"
}
fat_has() { # NAME
    mtype -i "$FAT" "::$1" >/dev/null 2>&1
}

# The LAN: a namespace with a tap (for QEMU's -netdev tap,ifname=tap0) and DHCP.
nsx() { ip netns exec "$NS" "$@"; }
lan_up() {
    ip netns add "$NS"
    nsx ip link set lo up
    nsx ip tuntap add dev tap0 mode tap
    nsx ip addr add "$HOST/24" dev tap0
    nsx ip addr add "$OUTSIDE/24" dev tap0
    nsx ip addr add fd99::1/64 dev tap0
    nsx ip link set tap0 up
    # (`ip netns exec` directly, not through nsx: $! must be the daemon's pid, not a subshell's.)
    ip netns exec "$NS" dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
        --interface=tap0 --except-interface=lo --dhcp-range="$GUEST,$GUEST,255.255.255.0,1h" \
        --dhcp-option=option:router,"$HOST" --dhcp-leasefile="$WORK/leases" \
        --pid-file="$WORK/dnsmasq.pid" --log-facility="$WORK/dnsmasq.log" --port=0 &
    DNSMASQ_PID=$!
}

# HTTP GET from the namespace, from an address; prints the code (000 when no answer), the
# body is in $WORK/body.
http() { # SOURCE PATH [MAXTIME]
    nsx curl -s -m "${3:-3}" --interface "$1" -o "$WORK/body" -w '%{http_code}' \
        "http://$GUEST:8080$2" 2>/dev/null || true
}
# A TCP connection to the guest's port 22 from SOURCE: prints "open" (an SSH banner) or "closed".
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

# Waits until the status page answers /healthz with CODE (default 200: the capture runs and
# everything is healthy); sets $ready (seconds since power-on, $boot_t0).
wait_ready() { # [CODE]
    local want=${1:-200}
    ready=
    while [ $((SECONDS - boot_t0)) -lt "$BOOT_LIMIT" ]; do
        kill -0 "$QEMU_PID" 2>/dev/null || fail "qemu exited during boot"
        # A boot that stopped (the initramfs gave up, the kernel panicked) fails now, not at
        # the time limit.
        if grep -aqE "^initramfs: dropping to a shell|Kernel panic" "$WORK/console.log" 2>/dev/null; then
            fail "the boot stopped: $(grep -aE "^initramfs: |Kernel panic" "$WORK/console.log" | head -n 4 | tr '\n' ' ')"
        fi
        if [ "$(http "$HOST" /healthz 2)" = "$want" ]; then
            ready=$((SECONDS - boot_t0))
            return
        fi
        sleep 1
    done
    fail "http://$GUEST:8080/healthz did not answer $want within $BOOT_LIMIT s"
}

# The first boot's note, read from the card as from a PC: sets $knock_line (as written),
# $ports and $cmd (the line with the gateway's address and the client's path).
read_sequence() {
    mtype -i "$FAT" ::knockgate-sequence.txt >"$WORK/sequence.txt" 2>/dev/null ||
        fail "knockgate-sequence.txt is not on the boot partition"
    knock_line=$(grep -m1 '^ *knockgate knock ' "$WORK/sequence.txt" | tr -d '\r') ||
        fail "no 'knockgate knock' command in knockgate-sequence.txt"
    read -r -a ports <<<"$(echo "$knock_line" | grep -oE '\b[0-9]{4,5}(/tcp)?\b' | sed 's,/tcp,,' | tr '\n' ' ')"
    [ ${#ports[@]} = 3 ] || fail "expected 3 ports in '$knock_line', got ${#ports[*]}"
    cmd=${knock_line//GATEWAY/$GUEST}
    cmd=$(echo "$cmd" | sed -E "s/^ *knockgate /$(printf '%s' "$CLIENT" | sed 's,/,\\/,g') /")
}

# Knocks with $cmd from the LAN address; true once port 22 answers it (within 10 s). With
# SECONDS, knocks again every 10 s until then: at the first boot of a slow machine sshd may
# still be making its host keys when knockgate is ready.
knock_open() { # [SECONDS]
    local until=$((SECONDS + ${1:-10}))
    while [ "$SECONDS" -lt "$until" ]; do
        # shellcheck disable=SC2086
        nsx $cmd >/dev/null
        for _ in $(seq 1 20); do
            [ "$(port22 "$HOST")" = open ] && return 0
            sleep 0.5
        done
    done
    return 1
}

# Knocks PORTS from the LAN address with knockgate's client.
knock() { # PORT...
    nsx "$CLIENT" knock "$GUEST" "$@" >/dev/null
}

# An SSH connection kept open as a control master (while the door is open: it stays up after
# the door closes, as ESTABLISHED); `gx COMMAND` runs a command in the guest through it.
ssh_open() {
    nsx ssh -i "$WORK/id" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o ConnectTimeout=20 -o BatchMode=yes -o LogLevel=ERROR -o ControlMaster=yes \
        -o ControlPath="$WORK/ssh.ctl" -o ControlPersist=yes -o ServerAliveInterval=5 \
        -fN "root@$GUEST" 2>"$WORK/ssh-err" || fail "SSH login failed: $(cat "$WORK/ssh-err")"
}
gx() {
    nsx ssh -o ControlPath="$WORK/ssh.ctl" -o LogLevel=ERROR "root@$GUEST" "$@"
}

# The JSON field PATH (Python syntax, e.g. '["gpio"]["available"]') of /api/status.
status_field() { # PATH
    [ "$(http "$HOST" /api/status)" = 200 ] || { echo "no answer"; return; }
    python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$1)" "$WORK/body"
}
