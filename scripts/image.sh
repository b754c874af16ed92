#!/usr/bin/env bash
# The firmware image in CI, as root, after scripts/arm.sh (whose aarch64 release build it
# reuses): builds the Raspberry Pi image (image/build.sh, with the Wi-Fi test's tools) into
# target/image, checks its boot path for every board it is for (scripts/bootpath-check.py),
# then boots it in qemu-system-aarch64 and knocks it open from a test network namespace: on
# -M virt with Wi-Fi (image/test-boot.sh), then on the Raspberry Pi 3 and 4
# models with the relays and the LED read back from the emulated SoC (image/test-pi.sh).
#
#   scripts/image.sh            all of it
#   scripts/image.sh deps       only the host packages (apt) and binfmt_misc for qemu-aarch64
#   scripts/image.sh build      only the build and the boot-path check per board (needs deps;
#                               mostly one core: dpkg under qemu-user, so .ci/run runs it
#                               beside the fuzzing)
#   scripts/image.sh test       only the boot tests, on the built image
set -euo pipefail
cd "$(dirname "$0")/.."
IMG=target/image/knockgate-rpi-arm64.img
phase=${1:-all}
start=$SECONDS
case $phase in
    deps | all)
        bash image/build.sh --deps-only
        bash image/test-boot.sh --deps-only
        # The boot-path check reads device trees with dtc's libfdt.
        dpkg-query -W -f='${Status}' python3-libfdt 2>/dev/null | grep -q "install ok installed" ||
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-libfdt >/dev/null
        ;;
esac
case $phase in
    build | all)
        echo "== image: build (image/build.sh)"
        # (The amd64 build is the reference the card's knockgate must replay a capture as.)
        [ -x target/debug/knockgate ] || cargo build --locked --quiet
        # IMAGE_DEB: a package already built (.ci/run builds the card beside test-deb.sh, which
        # rebuilds the amd64 package; the card's build then leaves scripts/deb.sh alone).
        # IMAGE_ROOTFS_CACHE: where .ci/run had the root file system built beside the tests
        # (image/build.sh --rootfs-only); missing or stale, the build makes its own.
        args=()
        [ -z "${IMAGE_DEB:-}" ] || args+=(--deb "$IMAGE_DEB")
        [ -z "${IMAGE_ROOTFS_CACHE:-}" ] || args+=(--rootfs-cache "$IMAGE_ROOTFS_CACHE")
        bash image/build.sh --out target/image --test-tools --replay-check target/debug/knockgate \
            "${args[@]}"
        echo "image.sh: built in $((SECONDS - start)) s; the card's package versions ($IMG.manifest):"
        sed 's/^/manifest: /' "$IMG.manifest"
        # Would the card boot on the boards it is for? Read from its device trees, kernel,
        # initramfs and root file system (no emulator models their regulators and radios).
        echo "== image: boot-path check per board (scripts/bootpath-check.py)"
        scripts/bootpath-check.py "$IMG"
        # The check fails where it must: the Pi 4's SD card behind a regulator whose driver the
        # initramfs lacks (as knockgate's first initramfs lacked it) is reported, by name.
        out=$(scripts/bootpath-check.py "$IMG" --board pi4b --without gpio_regulator) && {
            echo "image.sh: the boot-path check passed a Pi 4 initramfs without gpio_regulator" >&2
            exit 1
        }
        grep -q "FAIL root (initramfs): /[^ ]* (vqmmc-supply of mmc@7e340000): regulator-gpio: its driver gpio_regulator is a module of the root file system, not in the initramfs" <<<"$out" || {
            echo "image.sh: the boot-path check did not name the Pi 4's missing SD regulator:" >&2
            echo "$out" >&2
            exit 1
        }
        echo "image.sh: boot-path check: without gpio_regulator the Pi 4 fails, as it must"
        ;;
esac
case $phase in
    test | all)
        [ -x target/debug/knockgate ] || cargo build --locked --quiet
        mkdir -p target/artifacts
        echo "== image: -M virt: knock, Wi-Fi from the card on mac80211_hwsim (image/test-boot.sh)"
        bash image/test-boot.sh "$IMG" target/debug/knockgate
        echo "image.sh: virt tested at $((SECONDS - start)) s"
        echo "== image: -M raspi3b: knock over usb-net, relays and LED read back (image/test-pi.sh)"
        bash image/test-pi.sh --model raspi3b "$IMG" target/debug/knockgate
        echo "image.sh: raspi3b tested at $((SECONDS - start)) s"
        echo "== image: -M raspi4b (device tree patched for QEMU's model): the same checks"
        bash image/test-pi.sh --model raspi4b "$IMG" target/debug/knockgate
        echo "image.sh: booted and tested in $((SECONDS - start)) s"
        ;;
esac
case $phase in
    all | deps | build | test) ;;
    *) echo "usage: scripts/image.sh [deps|build|test]" >&2; exit 2 ;;
esac
