#!/bin/sh
# Vendors knockgate's crates for the Buildroot package (package/knockgate).
#
# Buildroot's cargo infrastructure vendors a package's dependencies when it
# downloads the package, then builds with cargo --offline --locked. knockgate
# is a local package (the repository itself), which Buildroot never downloads,
# so this does the same step beforehand, in the repository:
#
#   VENDOR/                     the crates of Cargo.lock (cargo vendor --locked)
#   VENDOR/.cargo-config.toml   the source replacement cargo vendor prints;
#                               knockgate.mk installs it as .cargo/config.toml
#                               in the build directory, as Buildroot does in a
#                               vendored tarball
#
# VENDOR/ is ignored by git. Run this again after every change to Cargo.lock;
# it needs the network (crates.io) unless the crates are in cargo's cache.
# Nothing outside VENDOR/ changes: the repository's own cargo builds keep
# using crates.io.
set -eu

top="$(cd "$(dirname "$0")/.." && pwd)"
cd "${top}"

tmp="$(mktemp)"
trap 'rm -f "${tmp}"' EXIT
# The same command as Buildroot's support/download/cargo-post-process.
cargo vendor --manifest-path Cargo.toml --locked VENDOR > "${tmp}"
mv "${tmp}" VENDOR/.cargo-config.toml
chmod 0644 VENDOR/.cargo-config.toml
echo "vendor.sh: $(find VENDOR -mindepth 1 -maxdepth 1 -type d | wc -l) crates in ${top}/VENDOR"
