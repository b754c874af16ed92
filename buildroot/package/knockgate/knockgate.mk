################################################################################
#
# knockgate
#
################################################################################

# The source is the repository this external tree lives in (its parent
# directory), not a release tarball: a local package, rsynced into the
# build directory. Keep the version in step with Cargo.toml.
KNOCKGATE_VERSION = 0.1.0
KNOCKGATE_SITE = $(BR2_EXTERNAL_KNOCKGATE_PATH)/..
KNOCKGATE_SITE_METHOD = local
KNOCKGATE_LICENSE = MIT or Apache-2.0
KNOCKGATE_DEPENDENCIES = libpcap

# Not copied into the build directory: cargo's output, and the fuzz and
# bench crates (their own workspaces, not part of the firmware).
KNOCKGATE_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude /target \
	--exclude /fuzz \
	--exclude /bench \
	--exclude /tests/artifacts

# The cargo infrastructure vendors the dependencies at download time,
# which a local package does not have. buildroot/vendor.sh does it
# beforehand, in the repository: VENDOR/ holds the crates, and
# VENDOR/.cargo-config.toml the source replacement that cargo vendor
# printed, which becomes the build directory's .cargo/config.toml, just
# as in a vendored tarball.
define KNOCKGATE_USE_VENDORED_CRATES
	@if [ ! -f $(@D)/VENDOR/.cargo-config.toml ]; then \
		echo "knockgate: no vendored crates in $(KNOCKGATE_SITE)/VENDOR:"; \
		echo "knockgate: run buildroot/vendor.sh in the knockgate repository"; \
		exit 1; \
	fi
	$(INSTALL) -D -m 0644 $(@D)/VENDOR/.cargo-config.toml \
		$(@D)/.cargo/config.toml
endef
KNOCKGATE_POST_RSYNC_HOOKS += KNOCKGATE_USE_VENDORED_CRATES

# The pcap crate's build script: link against the staging libpcap, and
# take its version from Buildroot instead of loading the (target)
# library on the build machine.
KNOCKGATE_CARGO_ENV = \
	LIBPCAP_LIBDIR=$(STAGING_DIR)/usr/lib \
	LIBPCAP_VER=$(LIBPCAP_VERSION)

# cargo install would put the binary in /usr/bin; knockgate is a
# daemon, in /usr/sbin.
KNOCKGATE_BUILD_PROFILE = $(if $(BR2_ENABLE_DEBUG),debug,release)

define KNOCKGATE_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 \
		$(@D)/target/$(RUSTC_TARGET_NAME)/$(KNOCKGATE_BUILD_PROFILE)/knockgate \
		$(TARGET_DIR)/usr/sbin/knockgate
endef

# [daemon] user = "knockgate" in the config: the daemon starts as root
# and drops to this user itself (keeping CAP_NET_RAW and CAP_NET_ADMIN).
define KNOCKGATE_USERS
	knockgate -1 knockgate -1 * - - - knockgate daemon
endef

define KNOCKGATE_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(KNOCKGATE_PKGDIR)/S41knockgate \
		$(TARGET_DIR)/etc/init.d/S41knockgate
endef

# Packet capture, and the iptables matches that the firewall doors use
# (comment, time for the datestop expiry, multiport, conntrack).
define KNOCKGATE_LINUX_CONFIG_FIXUPS
	$(call KCONFIG_ENABLE_OPT,CONFIG_PACKET)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_ADVANCED)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_XTABLES)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NF_CONNTRACK)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_XT_MATCH_COMMENT)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_XT_MATCH_CONNTRACK)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_XT_MATCH_MULTIPORT)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_XT_MATCH_TIME)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IP_NF_IPTABLES)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IP_NF_FILTER)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IP6_NF_IPTABLES)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IP6_NF_FILTER)
endef

$(eval $(cargo-package))
