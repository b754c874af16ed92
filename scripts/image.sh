#!/usr/bin/env bash
# The firmware image in CI (.ci/run calls it after scripts/arm.sh, whose aarch64 release build
# it reuses), as root: builds the Raspberry Pi 4 image (image/build.sh) into target/image, then
# boots it in qemu-system-aarch64 and knocks it open from a test network namespace
# (image/test-boot.sh). Prints the build time, the image size and boot-to-knock-ready.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
mkdir -p target/artifacts
echo "== image: build (image/build.sh --board rpi4-64)"
bash image/build.sh --board rpi4-64 --out target/image
built=$((SECONDS - start))
echo "== image: boot in qemu and knock (image/test-boot.sh)"
[ -x target/debug/knockgate ] || cargo build --locked --quiet
bash image/test-boot.sh target/image/knockgate-rpi4-64.img target/debug/knockgate
echo "image.sh: built in $built s, booted and tested in $((SECONDS - start - built)) s"
