#!/usr/bin/env bash
# Builds the knockgate firmware image: one flashable SD-card image for the Raspberry Pi 3 B,
# 3 B+, 4 B, 400, 5 and Zero 2 W (64-bit; the firmware picks the board's device tree), on a
# Debian 12 host (amd64, as CI runs it), as root, with nothing but Debian's package mirror:
#
#   image/build.sh [--out DIR] [--deb PATH] [--keep-rootfs] [--rootfs-cache DIR] [--test-tools]
#                  [--kernel PACKAGE=VERSION] [--replay-check BIN]
#   image/build.sh --deps-only     only install the host tools and register qemu-aarch64
#   image/build.sh --rootfs-only --rootfs-cache DIR
#                                  only the root file system, into the cache (CI builds it
#                                  beside the tests; the card's build then starts from it)
#
# Output, in DIR (default image/out):
#   knockgate-rpi-arm64.img      the SD card: MBR, FAT32 boot partition (KGBOOT), ext4 root
#                                (kgroot); flash it with dd, bmaptool or Raspberry Pi Imager
#   knockgate-rpi-arm64.img.sha256   its checksum (sha256sum -c)
#   knockgate-rpi-arm64.img.bmap     if bmaptool is installed
#   knockgate-rpi-arm64.img.manifest every package on the card with its version (the kernel, the
#                                firmware, busybox, the root file system's packages, knockgate),
#                                and what the mirror would have given instead of a pinned one
#   knockgate-test-tools-arm64.tar.gz   with --test-tools: hostapd, iw and busybox (udhcpd) for the
#                                emulated Wi-Fi test (image/test-boot.sh copies them into the
#                                running guest); never part of the card
#
# How (no loop devices, no mounts, no kernel installed under emulation):
#   1. an arm64 Debian 13 (trixie) root file system: mmdebstrap --variant=minbase under qemu-user
#      (binfmt_misc), with systemd, iptables, libpcap, iproute2, systemd-networkd (the DHCP
#      client), systemd-timesyncd and openssh-server;
#   2. the kernel (linux-image-*-arm64), the Raspberry Pi firmware (raspi-firmware) and
#      busybox-static are downloaded for arm64 by a private apt configuration and unpacked on
#      the host with dpkg-deb -x; depmod runs on the host;
#   3. a small initramfs (busybox, and the module classes a root device can depend on, loaded
#      by modalias as udev would) replaces mkinitramfs, which takes ~25 min under qemu-user;
#   4. knockgate from its arm64 Debian package, installed with dpkg (the binary, the unit, the
#      user, the man pages: what Raspberry Pi OS users get); then the overlays: image/rootfs
#      (shared with buildroot/) and image/debian (systemd units, networkd, fstab);
#   5. the partitions as files (mkfs.vfat + mcopy, mke2fs -d), put together with sfdisk + dd.
#
# The default package is target/deb/knockgate_VERSION-1_arm64.deb, (re)built with
# `scripts/deb.sh arm64` first. The image's first boot draws the SSH door's knock sequence and
# writes it to knockgate-sequence.txt on the boot partition (see README, "Firmware image").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BOARD=rpi-arm64
OUT=$ROOT/image/out
DEB=
KEEP_ROOTFS=no
TEST_TOOLS=no
CACHE=
DEPS_ONLY=no
ROOTFS_ONLY=no
REPLAY_REF=
SUITE=trixie
MIRROR=http://deb.debian.org/debian
BOOT_MIB=256
ROOT_FREE_MIB=384
# The kernel is pinned, not whatever linux-image-arm64 points at on the day of the build: the
# same commit must build the same card (bookworm-security's 6.1.192-3 once broke the dwc2 USB
# host on QEMU's raspi4b overnight). It is trixie-backports' 7.3: trixie's own 6.12 has the
# Pi 5's device tree but not its SD host driver (MMC_SDHCI_BRCMSTB), nor RP1 (the Pi 5's
# Ethernet, GPIO header and USB: MISC_RP1, PINCTRL_RP1, COMMON_CLK_RP1) nor PINCTRL_BCM2712;
# 7.3 builds them all as modules. Moving the pin is a commit of its own, after
# `scripts/image.sh` passes with it. --kernel PACKAGE=VERSION builds with another one (e.g.
# --kernel linux-image-6.12.118+deb13-arm64=6.12.118-1); the manifest names the mirror's newest.
KERNEL=linux-image-7.3.4+deb13-arm64=7.3.4-1~bpo13+1

usage() {
    sed -n '2,9p' "$0" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case $1 in
        --board) echo "build.sh: --board is gone: one card boots every supported Pi (the firmware picks the device tree; README, \"Firmware image\")" >&2; exit 2 ;;
        --out) OUT=$(realpath -m "${2:?}"); shift 2 ;;
        --deb) DEB=$(realpath "${2:?}"); shift 2 ;;
        --keep-rootfs) KEEP_ROOTFS=yes; shift ;;
        --test-tools) TEST_TOOLS=yes; shift ;;
        --rootfs-cache) CACHE=$(realpath -m "${2:?}"); shift 2 ;;
        --deps-only) DEPS_ONLY=yes; shift ;;
        --rootfs-only) ROOTFS_ONLY=yes; shift ;;
        --kernel) KERNEL=${2:?}; shift 2 ;;
        --replay-check) REPLAY_REF=$(realpath "${2:?}"); shift 2 ;;
        -h | --help) usage ;;
        *) echo "build.sh: unknown argument $1" >&2; usage ;;
    esac
done
[ "$ROOTFS_ONLY" = no ] || [ -n "$CACHE" ] || { echo "build.sh: --rootfs-only needs --rootfs-cache DIR" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "build.sh: run as root (mmdebstrap --mode=root, file ownership)" >&2; exit 1; }

log() { echo "build.sh: $*" >&2; }
# The first of these paths that exists (packages moved files under /usr between releases).
first_of() {
    for f in "$@"; do
        [ -e "$f" ] && { echo "$f"; return 0; }
    done
    return 0
}
start=$SECONDS
step() { log "[$((SECONDS - start)) s] $*"; }

# --- host tools -------------------------------------------------------------------------------
HOST_PKGS=(mmdebstrap qemu-user-static binfmt-support arch-test dosfstools mtools fdisk
    e2fsprogs kmod cpio gzip xz-utils zstd)
missing=()
for p in "${HOST_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Running arm64 maintainer scripts needs binfmt_misc with qemu-aarch64 registered.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
    update-binfmts --enable qemu-aarch64
fi
arch-test arm64 >/dev/null || { echo "build.sh: arm64 binaries do not run here (binfmt_misc + qemu-user-static)" >&2; exit 1; }
[ "$DEPS_ONLY" = no ] || exit 0

if [ -z "$DEB" ] && [ "$ROOTFS_ONLY" = no ]; then
    version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
    DEB=$ROOT/target/deb/knockgate_$version-1_arm64.deb
    step "knockgate's arm64 package (scripts/deb.sh; the build is up to date if scripts/arm.sh ran)"
    bash scripts/cross.sh setup >/dev/null
    bash scripts/deb.sh arm64
fi
[ "$ROOTFS_ONLY" = yes ] || [ "$(dpkg-deb -f "$DEB" Architecture 2>/dev/null)" = arm64 ] ||
    { echo "build.sh: no arm64 knockgate package at $DEB" >&2; exit 1; }

mkdir -p "$OUT"
WORK=$OUT/work
rm -rf "$WORK"
mkdir -p "$WORK"
ROOTFS=$WORK/rootfs

# --- arm64 packages fetched on the host --------------------------------------------------------
APT=$OUT/apt
mkdir -p "$APT"/{lists/partial,cache/archives/partial,etc/apt.conf.d,etc/preferences.d,debs}
cat >"$APT/etc/sources.list" <<EOF
deb $MIRROR $SUITE main non-free-firmware
deb $MIRROR $SUITE-updates main non-free-firmware
deb http://deb.debian.org/debian-security $SUITE-security main non-free-firmware
deb $MIRROR $SUITE-backports main non-free-firmware
EOF
cat >"$APT/apt.conf" <<EOF
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
Dir::State "$APT";
Dir::State::Lists "$APT/lists";
Dir::State::status "/dev/null";
Dir::Cache "$APT/cache";
Dir::Etc::SourceList "$APT/etc/sources.list";
Dir::Etc::SourceParts "$APT/etc/sources.list.d";
Dir::Etc::Parts "$APT/etc/apt.conf.d";
Dir::Etc::PreferencesParts "$APT/etc/preferences.d";
APT::Sandbox::User "root";
EOF
hostapt() { APT_CONFIG=$APT/apt.conf "$@"; }
step "arm64 package lists (kernel, firmware, busybox)"
hostapt apt-get update -qq
KPKG=${KERNEL%%=*}
KPKG_VERSION=${KERNEL#*=}
case $KPKG in
    linux-image-[0-9]*-arm64) ;;
    *) echo "build.sh: --kernel wants linux-image-ABI-arm64=VERSION, not $KERNEL" >&2; exit 2 ;;
esac
KVER=${KPKG#linux-image-}
hostapt apt-cache show "$KPKG=$KPKG_VERSION" >/dev/null 2>&1 ||
    { echo "build.sh: the pinned kernel $KPKG $KPKG_VERSION is not on the mirror any more; pick another with --kernel and move the pin (KERNEL= in $0) once scripts/image.sh passes with it" >&2; exit 1; }
# What the mirror would give today, for the manifest (drift is seen, not taken).
# (The newest of the suite and its backports, as `apt-cache madison` lists them, newest first.)
MIRROR_KVERSION=$(hostapt apt-cache madison linux-image-arm64 | awk 'NR == 1 {print $3}')
MIRROR_KPKG=$(hostapt apt-cache depends "linux-image-arm64=$MIRROR_KVERSION" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
# Since Linux 7.x Debian splits the kernel: linux-image-ABI is empty and depends on
# linux-base-ABI (modules' metadata, device trees), linux-binary-ABI (vmlinuz) and
# linux-modules-ABI, all of the same version.
KDEBS=("$KPKG=$KPKG_VERSION")
for part in $(hostapt apt-cache show "$KPKG=$KPKG_VERSION" | sed -n 's/^Depends: //p' | tr ',' '\n' |
    sed -n "s/^ *\(linux-\(base\|binary\|modules\)-$KVER\) .*/\1/p"); do
    KDEBS+=("$part=$KPKG_VERSION")
done
(cd "$APT/debs" && rm -f ./*.deb && hostapt apt-get download -qq "${KDEBS[@]}" raspi-firmware busybox-static)
step "kernel $KVER ($KPKG_VERSION, pinned; the mirror's linux-image-arm64 is $MIRROR_KVERSION)"
if [ "$TEST_TOOLS" = yes ]; then
    # Test-only: an access point (hostapd), the tool that moves a radio into a namespace (iw)
    # and a DHCP server (busybox's udhcpd), for the Wi-Fi test on a simulated radio
    # (mac80211_hwsim). Their libraries (libnl, libssl, ...) are on the card already:
    # wpasupplicant brings them. They are copied into the guest over SSH, never onto the card.
    rm -rf "$APT/test-debs" "$WORK/test-tools"
    mkdir -p "$APT/test-debs" "$WORK/test-tools"
    (cd "$APT/test-debs" && hostapt apt-get download -qq hostapd iw)
    for deb in "$APT"/test-debs/*.deb "$APT"/debs/busybox-static_*.deb; do
        dpkg-deb -x "$deb" "$WORK/test-tools/x"
    done
    mkdir -p "$WORK/test-tools/bin"
    # (Debian 13's packages put everything under /usr; Debian 12's iw and busybox did not.)
    for tool in sbin/hostapd sbin/iw bin/busybox; do
        found=$(first_of "$WORK/test-tools/x/usr/$tool" "$WORK/test-tools/x/$tool")
        [ -n "$found" ] || { echo "build.sh: no $tool in the test tools' packages" >&2; exit 1; }
        cp "$found" "$WORK/test-tools/bin/"
    done
    mkdir -p "$OUT"
    tar -C "$WORK/test-tools" -czf "$OUT/knockgate-test-tools-arm64.tar.gz" bin
    step "test tools: $OUT/knockgate-test-tools-arm64.tar.gz (hostapd, iw, busybox)"
fi

# --- the root file system ---------------------------------------------------------------------
# Wi-Fi: wpasupplicant (WPA2 for wlan0, configured from wifi.txt on the boot partition),
# firmware-brcm80211 (non-free-firmware: the brcmfmac firmware and the Pi 3/4 board files) and
# wireless-regdb (the regulatory database the country code selects).
INCLUDE=systemd-sysv,udev,kmod,iptables,libpcap0.8t64,iproute2,openssh-server,systemd-timesyncd,systemd-resolved,netbase,procps,ca-certificates,wireless-regdb,wpasupplicant,firmware-brcm80211
# --rootfs-cache DIR keeps mmdebstrap's result as a tarball named after the package list, for
# quicker rebuilds while working on knockgate (delete it to get Debian's updates).
cached=
if [ -n "$CACHE" ]; then
    mkdir -p "$CACHE"
    cached=$CACHE/rootfs-$SUITE-arm64-$(echo "$INCLUDE" | sha256sum | cut -c1-12).tar
fi
if [ -n "$cached" ] && [ -s "$cached" ]; then
    step "root file system from the cache $cached"
    mkdir -p "$ROOTFS"
    tar -C "$ROOTFS" --numeric-owner -xpf "$cached"
else
step "mmdebstrap $SUITE arm64 minbase (under qemu-user; a few minutes)"
mmdebstrap --arch=arm64 --variant=minbase --mode=root --format=directory --quiet \
    --include="$INCLUDE" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    "$SUITE" "$ROOTFS" \
    "deb $MIRROR $SUITE main non-free-firmware" \
    "deb $MIRROR $SUITE-updates main non-free-firmware" \
    "deb http://deb.debian.org/debian-security $SUITE-security main non-free-firmware"
if [ -n "$cached" ]; then
    tar -C "$ROOTFS" --numeric-owner -cpf "$cached.tmp" . && mv "$cached.tmp" "$cached"
fi
fi
if [ "$ROOTFS_ONLY" = yes ]; then
    step "root file system cached: $cached"
    rm -rf "$WORK"
    exit 0
fi

step "kernel modules and firmware"
for deb in "$APT"/debs/linux-*.deb; do
    dpkg-deb -x "$deb" "$WORK/kernel"
done
dpkg-deb -x "$APT"/debs/raspi-firmware_*.deb "$WORK/raspi"
dpkg-deb -x "$APT"/debs/busybox-static_*.deb "$WORK/busybox"
MODDIR=lib/modules/$KVER
# Where the package puts things: 6.1 and 6.12 have /lib/modules (or /usr/lib/modules),
# /boot/vmlinuz-ABI and /usr/lib/linux-image-ABI/broadcom/; 7.x has everything under
# /usr/lib/modules/ABI (vmlinuz, config, dtb/broadcom/).
KSRC=
for d in "$WORK/kernel/usr/$MODDIR" "$WORK/kernel/$MODDIR"; do
    [ -d "$d/kernel" ] && KSRC=$d && break
done
[ -n "$KSRC" ] || { echo "build.sh: no modules for $KVER in the kernel packages" >&2; exit 1; }
VMLINUZ=$(first_of "$KSRC/vmlinuz" "$WORK/kernel/boot/vmlinuz-$KVER")
DTBS=$(first_of "$KSRC/dtb/broadcom" "$WORK/kernel/usr/lib/linux-image-$KVER/broadcom")
KCONFIG=$(first_of "$KSRC/config" "$WORK/kernel/boot/config-$KVER")
if [ -z "$VMLINUZ" ] || [ -z "$DTBS" ] || [ -z "$KCONFIG" ]; then
    echo "build.sh: kernel $KVER: vmlinuz, device trees or config not found" >&2
    exit 1
fi
# A gateway has no display, camera or sound: those drivers (a third of the tree) stay out.
for d in sound drivers/gpu drivers/media drivers/infiniband drivers/iio drivers/target drivers/staging; do
    rm -rf "$KSRC/kernel/$d"
done
mkdir -p "$ROOTFS/lib/modules" "$ROOTFS/lib/firmware/brcm"
cp -a "$KSRC" "$ROOTFS/lib/modules/"
# The kernel and device trees live on the boot partition, not twice on the card.
rm -rf "$ROOTFS/$MODDIR/vmlinuz" "$ROOTFS/$MODDIR/dtb"
RASPI_BRCM=$(first_of "$WORK/raspi/usr/lib/firmware/brcm" "$WORK/raspi/lib/firmware/brcm")
cp -a "$RASPI_BRCM/." "$ROOTFS/lib/firmware/brcm/"
depmod -b "$ROOTFS" "$KVER"

# --- the initramfs ------------------------------------------------------------------------------
# Drivers are loaded as udev loads them, not from a hand list: the init feeds every device's
# modalias under /sys to modprobe (modules.alias), again and again as devices appear and deferred
# probes resolve, until the root device shows up. So the initramfs carries every module of the
# classes a root device can sit behind (the SD/MMC hosts and what they depend on: regulators,
# GPIO, pin control, clocks, resets, the firmware mailbox, power domains, DMA, PHYs; USB storage;
# virtio for the emulated test), with their dependencies, and ext4. The Pi 4's SD card, for one,
# probes only once its two supplies (regulator-gpio, regulator-fixed: modules in Debian's kernel)
# are there.
step "initramfs"
INITRD=$WORK/initramfs
mkdir -p "$INITRD"/{bin,dev,proc,sys,root,lib/modules}
cp "$(first_of "$WORK/busybox/usr/bin/busybox" "$WORK/busybox/bin/busybox")" "$INITRD/bin/busybox"
for applet in sh mount umount insmod modprobe mkdir cat sleep mdev findfs switch_root ls echo find tr \
    grep sed cut; do
    ln -s busybox "$INITRD/bin/$applet"
done
install -m 0755 image/initramfs/init "$INITRD/init"
INITRD_CLASSES=(drivers/mmc drivers/regulator drivers/gpio drivers/pinctrl drivers/clk
    drivers/reset drivers/firmware drivers/soc drivers/pmdomain drivers/mailbox drivers/dma
    drivers/phy drivers/mfd drivers/usb/host drivers/usb/dwc2 drivers/usb/dwc3 drivers/usb/common
    drivers/usb/core drivers/usb/phy drivers/usb/storage drivers/virtio drivers/block/virtio_blk
    drivers/scsi/sd_mod fs/ext4)
KMOD=$ROOTFS/$MODDIR
: >"$WORK/initrd-modules"
INITRD_NAMES=$(for class in "${INITRD_CLASSES[@]}"; do
    # (A class this kernel does not have, such as 6.1's drivers/pmdomain, is no error.)
    find "$KMOD/kernel/$class" "$KMOD/kernel/$class".ko* -name '*.ko*' 2>/dev/null || true
done | sed 's,.*/,,; s,\.ko.*,,' | LC_ALL=C sort -u)
# Their soft dependencies too ("softdep jbd2 pre: crypto-crc32c": the checksum driver, a module
# under crypto/ whose name changes between kernels), resolved through modules.alias below.
INITRD_SOFTDEPS=$(for name in $INITRD_NAMES; do
    sed -n "s/^softdep ${name//[-_]/[-_]} pre: \([^:]*\)\( post:.*\)\{0,1\}$/\1/p" "$KMOD/modules.softdep"
done | tr ' ' '\n' | grep . | LC_ALL=C sort -u || true)
for name in $INITRD_NAMES $INITRD_SOFTDEPS; do
    # (A soft dependency this kernel does not build, such as wm8994's regulator, is skipped,
    # as modprobe skips it.)
    { modprobe -d "$ROOTFS" -S "$KVER" --show-depends "$name" 2>/dev/null || true; } |
        awk '$1 == "insmod" {print $2}'
done | LC_ALL=C sort -u | while read -r path; do
    rel=${path#"$KMOD/"}
    mkdir -p "$INITRD/$MODDIR/$(dirname "$rel")"
    # Compressed modules (Debian 13's .ko.xz) are unpacked: busybox's insmod reads plain ELF.
    case $rel in
        *.ko.xz) xz -dc "$path" >"$INITRD/$MODDIR/${rel%.xz}" ;;
        *.ko.zst) zstd -qdc "$path" >"$INITRD/$MODDIR/${rel%.zst}" ;;
        *) cp "$path" "$INITRD/$MODDIR/$rel" ;;
    esac
    echo "$rel" >>"$WORK/initrd-modules"
done
cp "$KMOD"/modules.{order,builtin,builtin.modinfo} "$INITRD/$MODDIR/" 2>/dev/null || true
depmod -b "$INITRD" "$KVER"
for m in sdhci_iproc bcm2835 sdhci_brcmstb gpio_regulator fixed mmc_block ext4 virtio_blk $INITRD_SOFTDEPS; do
    modprobe -d "$INITRD" -S "$KVER" --show-depends "$m" >/dev/null 2>&1 && continue
    # Only what this kernel has: 6.1 has no sdhci_brcmstb, and some soft dependencies are not built.
    modprobe -d "$ROOTFS" -S "$KVER" --show-depends "$m" >/dev/null 2>&1 || continue
    echo "build.sh: the initramfs has no $m" >&2
    exit 1
done
step "initramfs: $(wc -l <"$WORK/initrd-modules") modules, $(du -sm "$INITRD/$MODDIR" | cut -f1) MiB unpacked"
(cd "$INITRD" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -9) >"$WORK/initrd.img"

# --- the appliance -------------------------------------------------------------------------------
step "the knockgate package, overlays, users, services"
# The gpio group owns /dev/gpiochip* (60-knockgate-gpio.rules): the daemon drives relays and the
# LED through it, as its own user, without root or /dev/mem. Made first: the package's postinst
# puts its user in it.
groupadd --root "$ROOTFS" --system gpio
# The package, as on Raspberry Pi OS: its postinst (under qemu-user) makes the knockgate user;
# no systemd runs here, so nothing starts and no sequence is drawn before the first boot.
cp "$DEB" "$ROOTFS/tmp/knockgate.deb"
chroot "$ROOTFS" env DEBIAN_FRONTEND=noninteractive dpkg -i /tmp/knockgate.deb >"$WORK/dpkg.log" 2>&1 ||
    { cat "$WORK/dpkg.log" >&2; echo "build.sh: installing $DEB failed" >&2; exit 1; }
rm "$ROOTFS/tmp/knockgate.deb"
# --replay-check BIN: the installed package, run as installed (under qemu-user, against the
# card's libpcap0.8t64), replays image/replay-check/knocks.pcap exactly as BIN (the amd64
# build) does; `check` passes on the same config. Nothing of it stays in the root.
if [ -n "$REPLAY_REF" ]; then
    step "replay check: the card's knockgate against $REPLAY_REF"
    summary=$(bash image/replay-check/run.sh "$ROOTFS" "$REPLAY_REF") ||
        { echo "build.sh: the card's knockgate failed the replay check (above)" >&2; exit 1; }
    step "replay check: $summary on arm64 (libpcap $(dpkg-query --admindir="$ROOTFS/var/lib/dpkg" -W -f='${Version}' libpcap0.8t64)), as on amd64"
fi
# The image's own config (base firewall, status page for the LAN) replaces the package's.
cp -a image/rootfs/. "$ROOTFS/"
cp -a image/debian/. "$ROOTFS/"
echo knockgate >"$ROOTFS/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tknockgate\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
    >"$ROOTFS/etc/hosts"
mkdir -p "$ROOTFS/boot/firmware"
grep -q '^gpio:.*:knockgate$' "$ROOTFS/etc/group" ||
    { echo "build.sh: the package did not put knockgate in the gpio group" >&2; exit 1; }
# The config holds the knock sequence: readable by the daemon's group, not by others.
# (Numeric ids: the host's /etc/group does not know the image's users.)
kg_gid=$(awk -F: '$1 == "knockgate" {print $3}' "$ROOTFS/etc/group")
chown "0:$kg_gid" "$ROOTFS/etc/knockgate/knockgate.toml"
chmod 0640 "$ROOTFS/etc/knockgate/knockgate.toml"
chmod 0755 "$ROOTFS/usr/sbin/knockgate-firewall"
# Every card gets its own SSH host keys at first boot (ssh-host-keys.service).
rm -f "$ROOTFS"/etc/ssh/ssh_host_*
# A machine id per card too (systemd makes one at first boot when the file is empty).
: >"$ROOTFS/etc/machine-id"
rm -f "$ROOTFS/var/lib/dbus/machine-id"
systemctl --root="$ROOTFS" enable systemd-networkd.service systemd-timesyncd.service \
    systemd-resolved.service ssh.service ssh-host-keys.service knockgate-firewall.service \
    knockgate-bootfiles.service knockgate-authorized-keys.service \
    knockgate.service >/dev/null 2>&1
# wpa_supplicant: only wlan0's (started by 70-knockgate-wlan.rules when wlan0 appears), not the
# D-Bus one the package enables.
systemctl --root="$ROOTFS" disable wpa_supplicant.service >/dev/null 2>&1 || true
systemctl --root="$ROOTFS" enable systemd-networkd-wait-online.service >/dev/null 2>&1 || true
rm -rf "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/lib/apt/lists/*

# --- the boot partition -------------------------------------------------------------------------
step "boot partition"
BOOT=$WORK/boot
mkdir -p "$BOOT"
cp "$WORK/raspi/usr/lib/raspi-firmware/"{bootcode.bin,start.elf,fixup.dat,start4.elf,fixup4.dat} "$BOOT/"
cp "$DTBS/"bcm{2711,2712,2837}-rpi-*.dtb "$DTBS/"bcm2712-d-rpi-*.dtb "$BOOT/"
# The Pi 5's D0 stepping (the 2 GB board, later the others) has its own upstream device tree,
# bcm2712-d-rpi-5-b.dtb; Raspberry Pi's firmware asks for its own name for that stepping,
# bcm2712d0-rpi-5-b.dtb, which it finds here as the same file.
cp "$BOOT/bcm2712-d-rpi-5-b.dtb" "$BOOT/bcm2712d0-rpi-5-b.dtb"
cp "$VMLINUZ" "$BOOT/vmlinuz"
cp "$WORK/initrd.img" "$BOOT/initrd.img"
cat >"$BOOT/config.txt" <<EOF
# knockgate image for the Raspberry Pi 3, 4, 400, 5 and Zero 2 W (firmware settings; Debian kernel $KVER)
arm_64bit=1
enable_uart=1
upstream_kernel=1
kernel=vmlinuz
initramfs initrd.img followkernel
disable_overscan=1
# With upstream_kernel=1 the firmware derives an upstream device tree name for the board
# (start.elf builds bcm%d-rpi-%s.dtb; raspberrypi/linux#3237); the Zero 2 W's is named here
# rather than trusted to that derivation, which was written before upstream had the board.
[pi02]
device_tree=bcm2837-rpi-zero-2-w.dtb
# The Pi 5 has no mini UART: its serial console is the debug UART by the HDMI ports.
[pi5]
cmdline=cmdline-pi5.txt
[all]
EOF
# The header's UART is ttyS1 (the mini UART, serial1 in the upstream device trees; the PL011
# drives Bluetooth). "serial0" is an alias only Raspberry Pi's own kernel knows. The last
# console= is /dev/console: the serial line, on a headless gateway. The Pi 5's is ttyAMA10
# (serial10, the PL011 at 0x107d001000, the device tree's stdout-path).
ROOT_ARGS="root=LABEL=kgroot rootwait net.ifnames=0 fsck.repair=yes"
echo "console=tty1 console=ttyS1,115200 $ROOT_ARGS" >"$BOOT/cmdline.txt"
echo "console=tty1 console=ttyAMA10,115200 $ROOT_ARGS" >"$BOOT/cmdline-pi5.txt"
cat >"$BOOT/README-knockgate.txt" <<'EOF'
knockgate firmware image

At the first boot, knockgate draws a random knock sequence for SSH and writes it, with the
commands that knock it, to knockgate-sequence.txt on this partition. Put the card in a PC
to read it, then delete the file once you have noted the sequence.

To log in over SSH as root with a key, put your public key(s) in a file named
authorized_keys on this partition before booting (it is copied at every boot).

Wi-Fi: fill in wifi-example.txt and save it as wifi.txt on this partition. At the next boot
the Pi joins that network on wlan0 and the file is removed from here (it holds your
passphrase). If it has a mistake, it stays here and the status page says which line.

Your own knockgate settings: put a knockgate.toml here (start from /etc/knockgate/knockgate.toml
on the Pi, or the project's examples/knockgate.toml). At the next boot it replaces the Pi's
config if it is valid (sequence = [] draws a new random sequence, written to
knockgate-sequence.txt); if not, the Pi keeps its config and the status page says why.
EOF
cat >"$BOOT/wifi-example.txt" <<'EOF'
# Wi-Fi for the knockgate gateway. Fill in the three lines, keep the double quotes, and save
# this file as wifi.txt on the same partition (the SD card's boot partition). At the next
# boot the Pi joins the network on wlan0 and removes wifi.txt from the card.

# Your two-letter country code (it selects the channels and power allowed where you are).
country = "GB"
# The network's name and its WPA2 passphrase (8 to 63 characters).
ssid = "my network"
password = "my passphrase"
# Only if the network does not broadcast its name:
# hidden = true
EOF
sed -i 's/$/\r/' "$BOOT/README-knockgate.txt" "$BOOT/wifi-example.txt"
BOOT_IMG=$WORK/boot.vfat
rm -f "$BOOT_IMG"
mkfs.vfat -F 32 -n KGBOOT -C "$BOOT_IMG" $((BOOT_MIB * 1024)) >/dev/null
mcopy -s -i "$BOOT_IMG" "$BOOT"/* ::/

# --- the root partition --------------------------------------------------------------------------
step "root partition"
used_mib=$(du -sm "$ROOTFS" | cut -f1)
ROOT_MIB=$((used_mib * 115 / 100 + ROOT_FREE_MIB))
ROOT_IMG=$WORK/root.ext4
rm -f "$ROOT_IMG"
mke2fs -q -t ext4 -L kgroot -E root_owner=0:0 -d "$ROOTFS" "$ROOT_IMG" "${ROOT_MIB}M"

# --- the card -----------------------------------------------------------------------------------
step "image"
IMG=$OUT/knockgate-$BOARD.img
rm -f "$IMG" "$IMG.sha256" "$IMG.bmap"
START_MIB=4
TOTAL_MIB=$((START_MIB + BOOT_MIB + ROOT_MIB + 1))
truncate -s "${TOTAL_MIB}M" "$IMG"
sfdisk --quiet "$IMG" <<EOF
label: dos
${START_MIB}MiB,${BOOT_MIB}MiB,c,*
$((START_MIB + BOOT_MIB))MiB,${ROOT_MIB}MiB,83
EOF
dd if="$BOOT_IMG" of="$IMG" bs=1M seek=$START_MIB conv=notrunc,sparse status=none
dd if="$ROOT_IMG" of="$IMG" bs=1M seek=$((START_MIB + BOOT_MIB)) conv=notrunc,sparse status=none
(cd "$OUT" && sha256sum "$(basename "$IMG")" >"$(basename "$IMG").sha256")
if command -v bmaptool >/dev/null; then
    bmaptool create -o "$IMG.bmap" "$IMG"
fi
# The manifest: which versions went into this card, so that a card that behaves differently
# from yesterday's can be diffed against it in minutes (CI prints it).
MANIFEST=$IMG.manifest
{
    echo "# $(basename "$IMG"): the packages on the card (image/build.sh, $(date -u +%Y-%m-%dT%H:%MZ))"
    echo "# sha256 $(cut -d' ' -f1 "$IMG.sha256")"
    echo "suite $SUITE arm64"
    for deb in "$APT"/debs/*.deb; do
        echo "boot $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version) $(dpkg-deb -f "$deb" Architecture)"
    done
    echo "knockgate $(dpkg-deb -f "$DEB" Package) $(dpkg-deb -f "$DEB" Version) sha256:$(sha256sum "$DEB" | cut -c1-64)"
    echo "mirror-newest-kernel $MIRROR_KPKG $MIRROR_KVERSION (the card has $KPKG $KPKG_VERSION, pinned)"
    dpkg-query --admindir="$ROOTFS/var/lib/dpkg" -W -f='rootfs ${Package} ${Version} ${Architecture}\n' |
        LC_ALL=C sort
} >"$MANIFEST"
[ "$KEEP_ROOTFS" = yes ] || rm -rf "$WORK/rootfs" "$WORK/kernel" "$WORK/initramfs"

step "done"
size=$(stat -c %s "$IMG")
cat <<EOF

knockgate image for $BOARD: $IMG
  $((size / 1048576)) MiB; sha256 in $IMG.sha256 (check: cd $OUT && sha256sum -c $(basename "$IMG").sha256)
  Debian $SUITE arm64, kernel $KVER ($KPKG_VERSION), knockgate from $DEB
  package versions: $MANIFEST

Flash it to the SD card (replace /dev/sdX with the card: lsblk shows it; everything on it is lost):
  dd if=$IMG of=/dev/sdX bs=4M conv=fsync status=progress
  bmaptool copy $IMG /dev/sdX            (faster, when $IMG.bmap exists)
  Raspberry Pi Imager: "Choose OS" > "Use custom" > $(basename "$IMG"); no OS customisation.
Then boot the Pi on the LAN. At the first boot the SSH knock sequence is drawn and written to
knockgate-sequence.txt on the card's boot partition (readable in any PC); the status page is
http://knockgate.lan:8080/ (or the Pi's address) from the LAN.
EOF
