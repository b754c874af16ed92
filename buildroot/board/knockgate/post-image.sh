#!/bin/bash
# knockgate post-image script (BR2_ROOTFS_POST_IMAGE_SCRIPT), modelled on
# Buildroot's board/raspberrypi/post-image.sh: sdcard.img, a FAT boot partition
# with the firmware, kernel and device trees, and the ext4 root file system.
#
# genimage-knockgate.cfg.in is the layout; the list of boot files depends on
# the board's firmware variant and device trees, so it is filled in here from
# what Buildroot put in ${BINARIES_DIR}, as Buildroot's own Raspberry Pi
# boards do.

set -euo pipefail

BOARD_DIR="$(dirname "$0")"
GENIMAGE_CFG="${BINARIES_DIR}/genimage.cfg"
GENIMAGE_TMP="${BUILD_DIR}/genimage.tmp"

FILES=()
for i in "${BINARIES_DIR}"/*.dtb "${BINARIES_DIR}"/rpi-firmware/*; do
	[ -e "${i}" ] || continue
	FILES+=( "${i#"${BINARIES_DIR}"/}" )
done

KERNEL=$(sed -n 's/^kernel=//p' "${BINARIES_DIR}/rpi-firmware/config.txt")
FILES+=( "${KERNEL}" )

BOOT_FILES=$(printf '\\t\\t\\t"%s",\\n' "${FILES[@]}")
sed "s|#BOOT_FILES#|${BOOT_FILES}|" "${BOARD_DIR}/genimage-knockgate.cfg.in" \
	> "${GENIMAGE_CFG}"

# An empty rootpath: the root file system image is already built, genimage
# only puts it in the disk image.
ROOTPATH_TMP="$(mktemp -d)"
trap 'rm -rf "${ROOTPATH_TMP}"' EXIT

rm -rf "${GENIMAGE_TMP}"

genimage \
	--rootpath "${ROOTPATH_TMP}" \
	--tmppath "${GENIMAGE_TMP}" \
	--inputpath "${BINARIES_DIR}" \
	--outputpath "${BINARIES_DIR}" \
	--config "${GENIMAGE_CFG}"
