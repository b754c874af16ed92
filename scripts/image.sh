#!/usr/bin/env bash
# The firmware image in CI, as root, after scripts/arm.sh (whose aarch64 release build it
# reuses): builds the Raspberry Pi 4 image (image/build.sh) into target/image, then boots it in
# qemu-system-aarch64 and knocks it open from a test network namespace (image/test-boot.sh).
#
#   scripts/image.sh            all of it
#   scripts/image.sh deps       only the host packages (apt) and binfmt_misc for qemu-aarch64
#   scripts/image.sh build      only the build (needs deps; mostly one core: dpkg under
#                               qemu-user, so .ci/run runs it beside the fuzzing)
#   scripts/image.sh test       only the boot test, on the built image
set -euo pipefail
cd "$(dirname "$0")/.."
IMG=target/image/knockgate-rpi4-64.img
phase=${1:-all}
start=$SECONDS
case $phase in
    deps | all)
        bash image/build.sh --deps-only
        bash image/test-boot.sh --deps-only
        ;;
esac
case $phase in
    build | all)
        echo "== image: build (image/build.sh --board rpi4-64)"
        bash image/build.sh --board rpi4-64 --out target/image
        echo "image.sh: built in $((SECONDS - start)) s"
        ;;
esac
case $phase in
    test | all)
        echo "== image: boot in qemu and knock (image/test-boot.sh)"
        [ -x target/debug/knockgate ] || cargo build --locked --quiet
        mkdir -p target/artifacts
        bash image/test-boot.sh "$IMG" target/debug/knockgate
        echo "image.sh: booted and tested in $((SECONDS - start)) s"
        ;;
esac
case $phase in
    all | deps | build | test) ;;
    *) echo "usage: scripts/image.sh [deps|build|test]" >&2; exit 2 ;;
esac
