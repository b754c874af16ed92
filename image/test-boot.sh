#!/usr/bin/env bash
# The firmware image's end-to-end test on QEMU's generic machine (-M virt, TCG): the card
# boots with its network on a tap device inside a test network namespace, and the test checks
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
#   7. Wi-Fi from the card: the wifi.txt put on the FAT partition before the first boot became
#      wlan0's wpa_supplicant config (mode 600, no passphrase in it or in the journal) and left
#      the partition;
#   8. after a power cut (qemu killed), with a malformed wifi.txt put on the card, the card
#      boots again: the boot log and the status page name the file, line and key, firstboot
#      leaves the sequence file alone, port 22 is closed, and the same knock opens it over eth0;
#   9. a real 802.11 stack: mac80211_hwsim's two radios in the guest, one a WPA2 access point
#      (hostapd and busybox's udhcpd, test-only tools copied in over SSH, in a network namespace of the
#      guest); wlan0, configured by nothing but the first wifi.txt, associates, gets its
#      address by DHCP, and a knock sent over the simulated radio opens port 22 to the
#      access point's side;
#  10. `apt-get remove knockgate` on the running gateway (the image installs the Debian
#      package): the unit stops, the chain and its jump go (IPv4, IPv6), the base firewall's
#      policy DROP and the config stay, and the SSH session made meanwhile still works.
# It prints the time from power-on to knock-ready (/healthz 200: the capture is running).
#
#   image/test-boot.sh IMAGE [KNOCKGATE]     (as root; KNOCKGATE: a native knockgate binary,
#                                              default target/debug/knockgate, built if missing;
#                                              the Wi-Fi tools are read from
#                                              knockgate-test-tools-arm64.tar.gz beside IMAGE)
#   image/test-boot.sh --deps-only           only install what it needs (qemu-system-arm, ...)
#
# Traffic stays in the namespace (10.99.0.0/24, 198.51.100.0/24 and fd99::/64 on the tap) and,
# for Wi-Fi, inside the guest (192.168.77.0/24 between its two simulated radios).
# (Commands for the guest are in single quotes on purpose: they expand there.)
# shellcheck disable=SC2016
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TEST_NAME=test-boot
NS=kgimg$$
CLIENT=${2:-$ROOT/target/debug/knockgate}
# shellcheck source=image/test-lib.sh
. image/test-lib.sh

if [ "${1:-}" = --deps-only ]; then
    install_deps
    exit 0
fi
IMAGE=$(realpath "${1:?usage: image/test-boot.sh IMAGE [KNOCKGATE] | --deps-only}")
TOOLS=$(dirname "$IMAGE")/knockgate-test-tools-arm64.tar.gz
[ -s "$TOOLS" ] || fail "no $TOOLS (image/build.sh --test-tools makes it)"
install_deps
WIFI_SSID=knockgate-test
WIFI_PASS="wpa2 test passphrase 42"

# --- the card: a copy, with the owner's SSH key and Wi-Fi put on the boot partition ------------
prepare_card "$IMAGE"
printf 'country = "DE"\r\nssid = "%s"\r\npassword = "%s"\r\n' "$WIFI_SSID" "$WIFI_PASS" >"$WORK/wifi.txt"
fat_put "$WORK/wifi.txt" wifi.txt
lan_up

# --- power on ----------------------------------------------------------------------------------
# Starts the emulated machine on the card, with its console appended to console.log.
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

log "first boot of $(basename "$IMAGE") in qemu-system-aarch64 (-M virt, TCG)"
power_on
wait_ready 200
first_ready=$ready
echo "test-boot: boot-to-knock-ready: $ready s (first boot: power-on to /healthz 200, qemu TCG on this machine)"

# --- 1. the first boot's sequence, read from the card as from a PC -----------------------------
read_sequence
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
log "knocking: knockgate knock $GUEST <3 ports>"
knock_t=$SECONDS
knock_open 10 || fail "port 22 did not open after the knock"
log "port 22: open after the knock ($((SECONDS - knock_t)) s)"

# --- 4. knocker only ---------------------------------------------------------------------------
[ "$(port22 "$OUTSIDE")" = closed ] || fail "port 22 opened for $OUTSIDE too (not the knocker)"
log "port 22 from $OUTSIDE: still closed"

# An SSH login (the key from the boot partition) while the door is open; the connection is kept
# open across the door's closing.
ssh_open
gx 'echo "unit: $(systemctl is-active knockgate.service)"
pid=$(systemctl show -P MainPID knockgate.service)
echo "user: $(stat -c %U /proc/$pid)"
echo "package: $(dpkg-query -W -f="\${Status} \${Version}" knockgate)"
echo "unit file: $(systemctl show -P FragmentPath knockgate.service)"
echo "exec: $(readlink /proc/$pid/exe)"
grep -E "^(CapEff|CapAmb|NoNewPrivs)" /proc/$pid/status
for ipt in iptables ip6tables; do
    echo "$ipt base: $($ipt -S INPUT | head -2 | tr "\n" " ")"
done
echo "rules:"
iptables -S KNOCKD' >"$WORK/ssh-out" || fail "SSH commands failed"
sed 's/^/test-boot:   guest: /' "$WORK/ssh-out" >&2
grep -qx "unit: active" "$WORK/ssh-out" || fail "knockgate.service is not active"
grep -qx "user: knockgate" "$WORK/ssh-out" || fail "knockgate does not run as the knockgate user"
# Installed by the arm64 Debian package: its unit, its binary.
grep -qx "package: install ok installed $(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)-1" "$WORK/ssh-out" ||
    fail "knockgate is not installed from its Debian package"
# (/lib is /usr/lib on bookworm's merged /usr: systemd names either.)
grep -qxE "unit file: (/usr)?/lib/systemd/system/knockgate.service" "$WORK/ssh-out" ||
    fail "knockgate.service is not the package's unit"
grep -qx "exec: /usr/sbin/knockgate" "$WORK/ssh-out" || fail "the daemon is not the package's /usr/sbin/knockgate"
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
rules=$(gx 'iptables -S KNOCKD | grep -c -- "-j ACCEPT" || true') ||
    fail "the SSH session opened during the door did not survive its closing"
[ "$rules" = 0 ] || fail "KNOCKD still has $rules rule(s) after the door closed"
log "the SSH session opened during the door is still up; KNOCKD is empty"

# --- 7. Wi-Fi settings from the card -------------------------------------------------------------
fat_has wifi.txt && fail "wifi.txt is still on the boot partition after the first boot"
gx "stat -c '%a %U' /etc/wpa_supplicant/wpa_supplicant-wlan0.conf
grep -c '$WIFI_PASS' /etc/wpa_supplicant/wpa_supplicant-wlan0.conf || true
journalctl -b --no-pager | grep -c '$WIFI_PASS' || true
sha256sum </etc/wpa_supplicant/wpa_supplicant-wlan0.conf" >"$WORK/wifi-out" || fail "SSH failed"
[ "$(sed -n 1p "$WORK/wifi-out")" = "600 root" ] ||
    fail "wpa_supplicant-wlan0.conf is not mode 600 root: $(sed -n 1p "$WORK/wifi-out")"
[ "$(sed -n 2p "$WORK/wifi-out")" = 0 ] || fail "the passphrase is in wpa_supplicant-wlan0.conf"
[ "$(sed -n 3p "$WORK/wifi-out")" = 0 ] || fail "the passphrase is in the journal"
wpa_sum=$(sed -n 4p "$WORK/wifi-out")
log "wifi.txt: taken in as wpa_supplicant-wlan0.conf (600 root, no passphrase there or in the journal) and removed from the card"

# --- 8. a power cut, a malformed wifi.txt, and the next boot -------------------------------------
sha256sum <"$WORK/sequence.txt" >"$WORK/sequence.sha256"
kill -KILL "$QEMU_PID"
wait "$QEMU_PID" 2>/dev/null || true
kill -0 "$QEMU_PID" 2>/dev/null && fail "qemu survived SIGKILL"
[ "$(http "$HOST" /healthz 1)" = 000 ] || fail "the status page still answers after the power cut"
ssh -o ControlPath="$WORK/ssh.ctl" -O exit x 2>/dev/null || true
rm -f "$WORK/ssh.ctl"
printf 'country = "DE"\r\nssid = "%s"\r\npassword = "tiny5"\r\n' "$WIFI_SSID" >"$WORK/wifi.txt"
fat_put "$WORK/wifi.txt" wifi.txt
log "power cut (qemu killed: the guest is gone); a malformed wifi.txt put on the card; booting again"
power_on
wait_ready 200
echo "test-boot: boot-to-knock-ready: $ready s (after a power cut)"
mtype -i "$FAT" ::knockgate-sequence.txt | sha256sum | cmp -s - "$WORK/sequence.sha256" ||
    fail "the second boot changed knockgate-sequence.txt: firstboot must run once"
grep -aq "wifi.txt:3: password: 5 characters" "$WORK/console.log" ||
    fail "the boot log on the console does not name wifi.txt's line 3 and its key"
grep -aq "tiny5" "$WORK/console.log" && fail "the console shows the malformed passphrase"
notices=$(status_field '["notices"]')
case $notices in
    *"wifi.txt:3: password: 5 characters"*) ;;
    *) fail "the status page's notices do not name wifi.txt's line 3: $notices" ;;
esac
[ "$(status_field '["healthy"]')" = True ] || fail "a malformed wifi.txt made the gateway unhealthy"
fat_has wifi.txt || fail "the malformed wifi.txt was removed from the card (the owner must fix it)"
log "malformed wifi.txt: named (file:line: key) in the boot log and on the status page, left on the card"
[ "$(port22 "$HOST")" = closed ] || fail "port 22 answers after the reboot, before any knock"
knock_open 10 || fail "after the power cut, the same knock does not open port 22 over eth0"
log "after the power cut: same sequence file, 22 closed, the same knock opens it over eth0"

# --- 9. a knock over Wi-Fi: two simulated radios, one an access point ----------------------------
ssh_open
[ "$(gx 'sha256sum </etc/wpa_supplicant/wpa_supplicant-wlan0.conf')" = "$wpa_sum" ] ||
    fail "the malformed wifi.txt changed wlan0's settings"
gx 'mkdir -p /run/kgtest && tar -xz -C /run/kgtest' <"$TOOLS" || fail "cannot copy the test tools in"
gx "cat >/run/kgtest/hostapd.conf" <<EOF
interface=wlan1
driver=nl80211
ssid=$WIFI_SSID
hw_mode=g
channel=6
wpa=2
wpa_key_mgmt=WPA-PSK
rsn_pairwise=CCMP
wpa_passphrase=$WIFI_PASS
EOF
gx 'exec >/run/kgtest/setup.log 2>&1
set -ex
modprobe mac80211_hwsim radios=2
for _ in $(seq 1 50); do [ -e /sys/class/net/wlan1 ] && break; sleep 0.2; done
phy=$(cat /sys/class/net/wlan1/phy80211/name)
ip netns add ap
/run/kgtest/bin/iw phy "$phy" set netns name ap
ip netns exec ap ip link set lo up
ip netns exec ap ip addr add 192.168.77.1/24 dev wlan1
ip netns exec ap /run/kgtest/bin/hostapd -B -P /run/kgtest/hostapd.pid -f /run/kgtest/hostapd.log /run/kgtest/hostapd.conf
printf "start 192.168.77.50\nend 192.168.77.50\ninterface wlan1\noption subnet 255.255.255.0\nlease_file /run/kgtest/udhcpd.leases\npidfile /run/kgtest/udhcpd.pid\n" >/run/kgtest/udhcpd.conf
touch /run/kgtest/udhcpd.leases
ip netns exec ap /run/kgtest/bin/busybox udhcpd /run/kgtest/udhcpd.conf' ||
    fail "cannot start the simulated access point: $(gx 'cat /run/kgtest/setup.log; tail -5 /run/kgtest/hostapd.log' 2>&1 | tail -12)"
log "mac80211_hwsim: WPA2 access point $WIFI_SSID on wlan1 in the guest's namespace ap"
wifi_addr=
for _ in $(seq 1 90); do
    wifi_addr=$(gx "ip -4 -o addr show dev wlan0 | awk '{print \$4}' | cut -d/ -f1" 2>/dev/null || true)
    [ -n "$wifi_addr" ] && break
    sleep 1
done
[ -n "$wifi_addr" ] || fail "wlan0 got no address: $(gx 'journalctl -b -u wpa_supplicant@wlan0 --no-pager | tail -5; ip addr show wlan0' 2>&1)"
gx '/run/kgtest/bin/iw dev wlan0 link' >"$WORK/wlan-link"
grep -q "SSID: $WIFI_SSID" "$WORK/wlan-link" || fail "wlan0 is not associated with $WIFI_SSID: $(cat "$WORK/wlan-link")"
log "wlan0: associated with $WIFI_SSID (WPA2), DHCP address $wifi_addr"
for _ in $(seq 1 15); do
    status_field '["captures"]' | grep -q "'interface': 'wlan0', 'up': True" && break
    sleep 1
done
status_field '["captures"]' | grep -q "'interface': 'wlan0', 'up': True" ||
    fail "knockgate does not listen on wlan0: $(status_field '["captures"]')"
ap_port22() {
    gx "ip netns exec ap timeout 5 bash -c 'exec 3<>/dev/tcp/$wifi_addr/22 && head -c 8 <&3'" 2>/dev/null || true
}
[ "$(ap_port22)" != "SSH-2.0-" ] || fail "port 22 answers over Wi-Fi before any knock"
gx "ip netns exec ap /usr/sbin/knockgate knock $wifi_addr ${ports[*]}" >/dev/null ||
    fail "the knock over Wi-Fi could not be sent"
opened=
for _ in $(seq 1 20); do
    if [ "$(ap_port22)" = "SSH-2.0-" ]; then opened=yes; break; fi
    sleep 0.5
done
[ -n "$opened" ] || fail "the knock over the simulated radio did not open port 22"
gx 'iptables -S KNOCKD' | grep -qE "^-A KNOCKD -s 192.168.77.1/32 .*--dports? 22 .*-j ACCEPT" ||
    fail "no KNOCKD rule for the Wi-Fi knocker 192.168.77.1"
log "a knock over the simulated radio opened port 22 to 192.168.77.1 (the rule is in KNOCKD)"

# --- 10. the package removed on the running system ------------------------------------------------
# `apt-get remove` as a Raspberry Pi OS owner would run it: the unit stops (the doors close),
# knockgate's chain and jump go in both families, the base firewall stays (policy DROP), the
# config stays, and this SSH session (established) keeps working.
gx 'DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq knockgate >/run/kgtest/remove.log 2>&1
echo "removed: $?"
echo "unit: $(systemctl is-active knockgate.service)"
for ipt in iptables ip6tables; do
    echo "$ipt chain: $($ipt -S | grep -c KNOCKD)"
    echo "$ipt policy: $($ipt -S INPUT | head -1)"
done
echo "config: $(test -f /etc/knockgate/knockgate.toml && echo kept)"
echo "binary: $(test -e /usr/sbin/knockgate && echo present || echo gone)"' >"$WORK/remove-out" ||
    fail "SSH commands failed after the removal"
sed 's/^/test-boot:   guest: /' "$WORK/remove-out" >&2
for want in "removed: 0" "unit: inactive" "iptables chain: 0" "ip6tables chain: 0" \
    "iptables policy: -P INPUT DROP" "ip6tables policy: -P INPUT DROP" "config: kept" "binary: gone"; do
    grep -qx "$want" "$WORK/remove-out" ||
        fail "after apt-get remove, expected \"$want\": $(gx 'cat /run/kgtest/remove.log' 2>&1 | tail -5)"
done
log "apt-get remove: knockgate stopped, its chain and jump gone (IPv4, IPv6), policy DROP kept, SSH session up"

echo "test-boot: PASS (boot-to-knock-ready $first_ready s, $ready s after a power cut; whole test $((SECONDS - t0)) s)"
