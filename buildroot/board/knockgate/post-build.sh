#!/bin/sh
# knockgate post-build script (BR2_ROOTFS_POST_BUILD_SCRIPT), run after the
# overlays are copied, with the target directory as $1.
#
# - /boot: the init script mounts the FAT boot partition there for
#   "knockgate firstboot".
# - [daemon] user = "knockgate" in /etc/knockgate/knockgate.toml: BusyBox
#   init starts the daemon as root and the daemon drops to this user itself
#   (the shared config in image/rootfs leaves it out: under systemd the unit
#   sets the user). Idempotent: the line is put right after the [daemon]
#   header, replacing any user key of that table; a [daemon] table is added
#   if there is none.

set -eu

TARGET="${1:-${TARGET_DIR:?}}"
CONFIG="${TARGET}/etc/knockgate/knockgate.toml"
FIREWALL="${TARGET}/usr/sbin/knockgate-firewall"
USER_LINE='user = "knockgate"'

mkdir -p "${TARGET}/boot"

if [ ! -f "${CONFIG}" ]; then
	echo "post-build.sh: ${CONFIG} is missing (from the image/rootfs overlay)" >&2
	exit 1
fi
if [ ! -f "${FIREWALL}" ]; then
	echo "post-build.sh: ${FIREWALL} is missing (from the image/rootfs overlay)" >&2
	exit 1
fi
chmod 0755 "${FIREWALL}"

if grep -Eq '^[[:space:]]*\[daemon\][[:space:]]*(#.*)?$' "${CONFIG}"; then
	awk -v line="${USER_LINE}" '
		/^[ \t]*\[/ {
			in_daemon = ($0 ~ /^[ \t]*\[daemon\][ \t]*(#.*)?$/)
			print
			if (in_daemon)
				print line
			next
		}
		in_daemon && /^[ \t]*user[ \t]*=/ { next }
		{ print }
	' "${CONFIG}" > "${CONFIG}.tmp"
	mv "${CONFIG}.tmp" "${CONFIG}"
else
	printf '\n[daemon]\n%s\n' "${USER_LINE}" >> "${CONFIG}"
fi
