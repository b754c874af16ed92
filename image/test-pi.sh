#!/usr/bin/env bash
# The firmware image on QEMU's Raspberry Pi 3 model (-M raspi3b; or -M raspi4b): the same card,
# with the Pi's own device tree (Debian's bcm2837-rpi-3-b.dtb from the card), SD host
# (sdhost-bcm2835), USB network (usb-net, cdc_ether) and GPIO block (pinctrl-bcm2835; on the
# Pi 4 bcm2711-rpi-4-b.dtb, sdhci-iproc and pinctrl-bcm2711), booted with its network on a tap
# in a test network namespace. The owner's settings are put on the FAT partition before
# the first boot, as from a PC: an SSH key, and a knockgate.toml with a relay door (garage,
# GPIO 17, a 3 s pulse), a sprinkler relay with a 4 s watchdog (GPIO 27) and the status LED
# (GPIO 22). The test checks, from the namespace:
#
#   1. the config was taken in from the boot partition (and removed from it), and the first
#      boot wrote knockgate-sequence.txt; port 22 is closed, the status page answers the LAN
#      only;
#   2. the knock from the note opens 22 over usb-net; SSH shows knockgate under the shipped
#      unit as its own user (in the gpio group, CapEff 0x3000: no CAP_SYS_RAWIO), the GPIO on
#      the character device (/dev/gpiochip0 root:gpio 660), no /dev/gpiomem, no iomem=relaxed;
#   3. pin levels, read from the machine model's level register (GPLEV0, through QEMU's QMP
#      socket, image/test-gpio.py), not from logs: the LED's heartbeat while idle; a knock on
#      the garage door takes GPIO 17 high for the pulse, then low, and holds the LED on; the
#      sprinkler's "on" is cut by its watchdog; SIGTERM (systemctl stop) leaves every pin at
#      its safe level;
#   4. the SSH door closes after its time;
#   5. a GPIO the daemon cannot open (/dev/gpiochip0 made root-only, knockgate restarted):
#      /healthz and /api/status say so, the SSH door still opens, the relay door leaves the pin
#      alone; given back (and `systemctl reload`), the relay works again without a restart.
#
#   image/test-pi.sh [--model raspi3b|raspi4b] IMAGE [KNOCKGATE]
#       (as root; KNOCKGATE: a native knockgate binary, default target/debug/knockgate, built
#       if missing). raspi4b needs Debian's bcm2711-rpi-4-b.dtb patched for QEMU's model
#       (test-only, with fdtput: QEMU has no HDMI/DVP blocks, puts the card on the Arasan
#       controller and the USB network on the dwc2 OTG port); raspi3b takes the card's
#       device tree unchanged.
# (Commands for the guest are in single quotes on purpose: they expand there.)
# shellcheck disable=SC2016
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODEL=raspi3b
if [ "${1:-}" = --model ]; then
    MODEL=${2:?--model raspi3b|raspi4b}
    shift 2
fi
TEST_NAME="test-pi ($MODEL)"
NS=kgpi$$
CLIENT=${2:-$ROOT/target/debug/knockgate}
CONSOLE_COPY=$MODEL-console.log
# shellcheck source=image/test-lib.sh
. image/test-lib.sh

IMAGE=$(realpath "${1:?usage: image/test-pi.sh [--model raspi3b|raspi4b] IMAGE [KNOCKGATE]}")
install_deps
# The console: on the Pi 3 the mini UART (ttyS1, QEMU's second serial port: the PL011 belongs
# to Bluetooth in the upstream device tree); on the Pi 4 model the mini UART's interrupt hangs
# the kernel at the console's open, so the PL011 (ttyAMA0, the first).
case $MODEL in
    raspi3b) DTB=bcm2837-rpi-3-b.dtb GPIO_BASE=0x3f200000 CONSOLE=ttyS1 SERIALS=(-serial null -serial chardev:console) ;;
    raspi4b) DTB=bcm2711-rpi-4-b.dtb GPIO_BASE=0xfe200000 CONSOLE=ttyAMA0 SERIALS=(-serial chardev:console -serial null) ;;
    *) fail "unknown model $MODEL (raspi3b, raspi4b)" ;;
esac
PIN_GARAGE=17
PIN_SPRINKLER=27
PIN_LED=22

# --- the card: a copy the size of a real card (a power of two), the owner's files on it --------
prepare_card "$IMAGE"
mcopy -i "$FAT" "::$DTB" "$WORK/pi.dtb"
if [ "$MODEL" = raspi4b ]; then
    command -v fdtput >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq device-tree-compiler >/dev/null
    for node in clock@7ef00000 interrupt-controller@7ef00100 hdmi@7ef00700 i2c@7ef04500 \
        hdmi@7ef05700 i2c@7ef09500 avs-monitor@7d5d2000; do
        fdtput -t s "$WORK/pi.dtb" "/soc/$node" status disabled
    done
    fdtput -d "$WORK/pi.dtb" /soc/mmc@7e300000 mmc-pwrseq
    fdtput -t s "$WORK/pi.dtb" /soc/usb@7e980000 dr_mode host
    # The Pi 4's SD host (emmc2, which QEMU does not model) has two supplies: vqmmc from
    # sd_io_1v8_reg (regulator-gpio) and vmmc from sd_vcc_reg (regulator-fixed), both modules
    # in Debian's kernel. The card's controller here (the Arasan one) gets the same two, so the
    # card appears only if the initramfs loaded both drivers, as on the board. Their GPIOs move
    # from the firmware's expander (which QEMU's model does not answer: "Failed to get GPIO 4
    # config", the regulators' probes fail with -EIO) to SoC lines the model drives: 4 and 6,
    # the expander's numbers, unused by the test's relays and LED.
    # (The nodes by their labels: /regulator-sd-io-1v8 in Linux 7's device tree, /sd_io_1v8_reg
    # in 6.1's, which has no __symbols__.)
    label() { fdtget "$WORK/pi.dtb" /__symbols__ "$1" 2>/dev/null || echo "/$1"; }
    io_reg=$(label sd_io_1v8_reg)
    vcc_reg=$(label sd_vcc_reg)
    soc_gpio=$(fdtget -t x "$WORK/pi.dtb" /soc/gpio@7e200000 phandle)
    fdtput -t x "$WORK/pi.dtb" "$io_reg" gpios "$soc_gpio" 4 0
    fdtput -t x "$WORK/pi.dtb" "$vcc_reg" gpio "$soc_gpio" 6 0
    fdtput -t x "$WORK/pi.dtb" /soc/mmc@7e300000 vqmmc-supply \
        "$(fdtget -t x "$WORK/pi.dtb" "$io_reg" phandle)"
    fdtput -t x "$WORK/pi.dtb" /soc/mmc@7e300000 vmmc-supply \
        "$(fdtget -t x "$WORK/pi.dtb" "$vcc_reg" phandle)"
fi
size=$(stat -c %s "$CARD")
card_size=$((1 << 30))
while [ "$card_size" -lt "$size" ]; do card_size=$((card_size * 2)); done
qemu-img resize -q -f raw "$CARD" "$card_size"
{
    cat image/rootfs/etc/knockgate/knockgate.toml
    cat <<EOF

# The test's home automation: two relays and the status LED.
[[relay]]
name = "garage"
pin = $PIN_GARAGE

[[relay]]
name = "sprinkler"
pin = $PIN_SPRINKLER
max_on = "4s"

[led]
pin = $PIN_LED

[[door]]
name = "garage"
sequence = ["41001", "41002", "41003"]
seq_timeout = "10s"
gpio = { relay = "garage", mode = "pulse", duration = "3s" }

[[door]]
name = "sprinkler"
sequence = ["42001", "42002", "42003"]
seq_timeout = "10s"
gpio = { relay = "sprinkler", mode = "on" }
EOF
} | sed 's/$/\r/' >"$WORK/knockgate.toml"
fat_put "$WORK/knockgate.toml" knockgate.toml
lan_up

power_on() {
    boot_t0=$SECONDS
    ip netns exec "$NS" qemu-system-aarch64 -M "$MODEL" -display none -monitor none \
        -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" -dtb "$WORK/pi.dtb" \
        -drive "file=$CARD,if=sd,format=raw" \
        -append "console=$CONSOLE,115200 root=LABEL=kgroot rootwait net.ifnames=0 fsck.repair=yes" \
        -usb -netdev tap,id=lan,ifname=tap0,script=no,downscript=no \
        -device usb-net,netdev=lan,mac=40:54:00:4b:47:01,bus=usb-bus.0,port=1 \
        -chardev "file,id=console,path=$WORK/console.log,append=on" \
        "${SERIALS[@]}" \
        -qmp "unix:$WORK/qmp.sock,server=on,wait=off" &
    QEMU_PID=$!
}

gpio() { python3 image/test-gpio.py "$@"; }
level() { gpio level "$WORK/qmp.sock" "$GPIO_BASE" "$1"; }
# Records GPLEV0 for SECONDS into $WORK/NAME.rec, in the background; sets $rec_pid.
record() { # NAME SECONDS
    gpio record "$WORK/qmp.sock" "$GPIO_BASE" "$2" "$WORK/$1.rec" &
    rec_pid=$!
    sleep 0.3
}
# A recording's summary for a pin: "first F last L samples N", then "high START LENGTH" lines.
pulses() { # NAME PIN
    gpio pulses "$WORK/$1.rec" "$2"
}
highs() { pulses "$1" "$2" | grep -c '^high' || true; }
# The one high interval's length, if there is exactly one.
only_pulse() { # NAME PIN
    [ "$(highs "$1" "$2")" = 1 ] || fail "GPIO $2 ($1): expected one high interval, got: $(pulses "$1" "$2" | tr '\n' ' ')"
    pulses "$1" "$2" | awk '/^high/ {print $3}'
}
between() { # VALUE LOW HIGH
    python3 -c 'import sys; v, lo, hi = map(float, sys.argv[1:]); sys.exit(0 if lo <= v <= hi else 1)' "$@"
}

log "first boot of $(basename "$IMAGE") on qemu-system-aarch64 -M $MODEL (4 emulated cores)"
power_on
wait_ready 200
first_ready=$ready
echo "$TEST_NAME: boot-to-knock-ready: $ready s (power-on to /healthz 200)"

# --- 1. the owner's files taken in; closed; LAN-only page -----------------------------------
fat_has knockgate.toml && fail "knockgate.toml is still on the boot partition"
read_sequence
[ "$(status_field '["gpio"]["backend"]')" = cdev ] ||
    fail "the GPIO backend is not the character device: $(status_field '["gpio"]')"
[ "$(status_field '["gpio"]["available"]')" = True ] || fail "GPIO unavailable: $(status_field '["gpio"]')"
[ "$(http "$OUTSIDE" /api/status)" = 000 ] || fail "the status page answers outside the LAN"
[ "$(port22 "$HOST")" = closed ] || fail "port 22 answers before any knock"
log "knockgate.toml taken in from the boot partition (relays on the cdev backend); 22 closed; page LAN-only"

# --- 2. knocked open over usb-net; the shipped unit, unprivileged ----------------------------
knock_open 120 || fail "port 22 did not open after the knock"
knock_t=$SECONDS
log "port 22: open after the knock over usb-net"
ssh_open
gx 'pid=$(systemctl show -P MainPID knockgate.service)
echo "unit: $(systemctl is-active knockgate.service)"
echo "user: $(stat -c %U /proc/$pid)"
echo "groups: $(id -nG knockgate)"
grep -E "^CapEff" /proc/$pid/status
echo "chip: $(stat -c "%U:%G %a" /dev/gpiochip0)"
echo "gpiomem: $(ls /dev/gpiomem 2>/dev/null || echo none)"
echo "cmdline: $(cat /proc/cmdline)"
echo "nic: $(ip -o link | grep -i 40:54:00:4b:47:01 | cut -d: -f2 | tr -d " ")"' >"$WORK/ssh-out" || fail "SSH commands failed"
sed "s/^/$TEST_NAME:   guest: /" "$WORK/ssh-out" >&2
grep -qx "unit: active" "$WORK/ssh-out" || fail "knockgate.service is not active"
grep -qx "user: knockgate" "$WORK/ssh-out" || fail "knockgate does not run as the knockgate user"
grep -qE "^groups: .*\bgpio\b" "$WORK/ssh-out" || fail "the knockgate user is not in the gpio group"
grep -qE '^CapEff:\s+0000000000003000$' "$WORK/ssh-out" || fail "knockgate's capabilities are not exactly NET_RAW+NET_ADMIN"
grep -qE '^chip: root:gpio 660' "$WORK/ssh-out" || fail "/dev/gpiochip0 is not root:gpio 660"
grep -qx "gpiomem: none" "$WORK/ssh-out" || fail "the kernel has /dev/gpiomem: not the kernel we ship"
grep -q "iomem=relaxed" "$WORK/ssh-out" && fail "booted with iomem=relaxed"
log "knockgate active as user knockgate (groups gpio), CapEff 0x3000, /dev/gpiochip0 root:gpio 660, no /dev/gpiomem"

# --- 3. pin levels from the machine model ----------------------------------------------------
record idle 6
wait "$rec_pid"
n=$(highs idle "$PIN_LED")
[ "$n" -ge 2 ] || fail "the LED did not heartbeat while idle: $(pulses idle "$PIN_LED" | tr '\n' ' ')"
pulses idle "$PIN_LED" | awk '/^high/ && $3 > 1.0 {exit 1}' ||
    fail "the LED's idle flashes are not short: $(pulses idle "$PIN_LED" | tr '\n' ' ')"
if [ "$(highs idle "$PIN_GARAGE")" != 0 ] || [ "$(highs idle "$PIN_SPRINKLER")" != 0 ]; then
    fail "a relay pin was high while idle"
fi
log "LED (GPIO $PIN_LED) idle: $n short flashes in 6 s (heartbeat); relays low"

record garage 10
knock 41001 41002 41003
wait "$rec_pid"
# (Captured first: `grep -q` quits at its match, and the reader's next line would then fail
# the pipeline with a broken pipe.)
garage=$(pulses garage "$PIN_GARAGE")
grep -q '^first 0 last 0' <<<"$garage" || fail "GPIO $PIN_GARAGE was not low before and after: $(head -n 1 <<<"$garage")"
len=$(only_pulse garage "$PIN_GARAGE")
between "$len" 2.0 4.5 || fail "the garage pulse (3 s) lasted $len s"
pulses garage "$PIN_LED" | awk '/^high/ && $3 >= 2.5 {found=1} END {exit !found}' ||
    fail "the LED was not held on after the door opened: $(pulses garage "$PIN_LED" | tr '\n' ' ')"
log "garage knock: GPIO $PIN_GARAGE high for $len s (3 s pulse), then low; the LED solid meanwhile"

record sprinkler 10
knock 42001 42002 42003
wait "$rec_pid"
len=$(only_pulse sprinkler "$PIN_SPRINKLER")
between "$len" 3.0 6.0 || fail "the sprinkler's watchdog (4 s) cut it after $len s"
grep -q ' last 0 ' <<<"$(pulses sprinkler "$PIN_SPRINKLER")" || fail "GPIO $PIN_SPRINKLER is still high"
log "sprinkler \"on\": GPIO $PIN_SPRINKLER high for $len s, cut by its 4 s watchdog"

knock 42001 42002 42003
for _ in $(seq 1 20); do [ "$(level "$PIN_SPRINKLER")" = 1 ] && break; sleep 0.25; done
[ "$(level "$PIN_SPRINKLER")" = 1 ] || fail "the sprinkler did not switch on"
gx 'systemctl stop knockgate.service'
for pin in $PIN_SPRINKLER $PIN_GARAGE $PIN_LED; do
    [ "$(level "$pin")" = 0 ] || fail "GPIO $pin is not at its safe level (low) after SIGTERM"
done
log "SIGTERM with the sprinkler on: GPIO $PIN_SPRINKLER, $PIN_GARAGE, $PIN_LED all low (safe state)"
gx 'systemctl start knockgate.service'
boot_t0=$SECONDS
wait_ready 200

# --- 4. the SSH door closed after its time -----------------------------------------------------
duration=$(sed -nE 's/^firewall = .*duration = "([0-9]+)s".*/\1/p' image/rootfs/etc/knockgate/knockgate.toml)
until [ "$(port22 "$HOST")" = closed ]; do
    [ $((SECONDS - knock_t)) -lt $((duration + 20)) ] ||
        fail "port 22 still open $((SECONDS - knock_t)) s after the knock (door: $duration s)"
    sleep 1
done
log "port 22: closed again after the door's $duration s (the SSH connection made meanwhile stays up)"

# --- 5. a GPIO that cannot be opened ---------------------------------------------------------
gx 'chmod 0600 /dev/gpiochip0 && systemctl restart knockgate.service'
boot_t0=$SECONDS
wait_ready 503
[ "$(status_field '["gpio"]["available"]')" = False ] || fail "the status page does not show the GPIO unavailable"
case $(status_field '["gpio"]["error"]') in
    *"permission denied"*) ;;
    *) fail "the GPIO error does not say why: $(status_field '["gpio"]["error"]')" ;;
esac
http "$HOST" /healthz >/dev/null
grep -q "relays and LED unavailable" "$WORK/body" || fail "/healthz does not name the GPIO: $(cat "$WORK/body")"
knock_open 10 || fail "with the GPIO unavailable, the SSH door did not open"
record nogpio 5
knock 41001 41002 41003
wait "$rec_pid"
[ "$(highs nogpio "$PIN_GARAGE")" = 0 ] || fail "GPIO $PIN_GARAGE moved while the GPIO was unavailable"
log "GPIO made root-only: /healthz 503 naming it, /api/status gpio.available false (permission denied); the SSH door opens; the garage pin untouched"
gx 'chmod 0660 /dev/gpiochip0 && systemctl reload knockgate.service'
for _ in $(seq 1 20); do
    [ "$(status_field '["gpio"]["available"]')" = True ] && break
    sleep 0.5
done
[ "$(status_field '["gpio"]["available"]')" = True ] || fail "the GPIO is still unavailable after it was given back"
record back 8
knock 41001 41002 41003
wait "$rec_pid"
len=$(only_pulse back "$PIN_GARAGE")
between "$len" 2.0 4.5 || fail "after the GPIO came back, the garage pulse lasted $len s"
log "GPIO given back + reload: available again without a restart; the garage pulse works ($len s)"

echo "$TEST_NAME: PASS (boot-to-knock-ready $first_ready s; whole test $((SECONDS - t0)) s)"
