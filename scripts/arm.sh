#!/usr/bin/env bash
# The ARM part of CI (.ci/run calls it after scripts/test.sh), as root, idempotent:
# 1. installs the cross toolchains, qemu-user, the targets' libpcap (scripts/cross.sh setup);
# 2. runs clippy for aarch64 (the ARM-only code, e.g. GPIO, is invisible to the native clippy);
#    release-builds aarch64 and armv7, prints the sizes, and fails if the stripped armv7 binary
#    is over its budget (4 MiB: the SD-card appliance);
# 3. runs each release binary under qemu-user (`check` on the example config);
# 4. runs the unit tests, the binary's tests and tests/it/cli.rs for both targets under qemu-user.
#    The namespace tests (tests/it/netns.rs, tests/it/firewall.rs, the iptables backend's) are not run
#    here: live capture needs packet-socket options qemu-user does not emulate, so they run
#    natively in scripts/test.sh (and in the image's emulated boot test). Those in the library
#    print `SKIPPED (KNOCKGATE_TEST_NO_NETNS): ARM run under qemu-user ...`. One unit test is
#    filtered out by name: command::tests::missing_program_is_not_found (qemu-user turns
#    posix_spawn's vfork into a fork, so the exec error is lost; see the test).
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGET=$((4 * 1024 * 1024))
TARGETS=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
QEMU_SKIP=(command::tests::missing_program_is_not_found)
start=$SECONDS

echo "== ARM: setup (scripts/cross.sh setup)"
bash scripts/cross.sh setup

echo "== ARM: cargo clippy --all-targets for aarch64 (code under cfg(target_arch), e.g. GPIO)"
bash scripts/cross.sh cargo aarch64-unknown-linux-gnu clippy --locked --all-targets --quiet \
    -- -D warnings

echo "== ARM: release builds"
bash scripts/cross.sh build

echo "== ARM: binary sizes (stripped, release)"
for t in "${TARGETS[@]}"; do
    bytes=$(stat -c %s "target/$t/release/knockgate")
    printf '%-32s %9d bytes  %s MiB\n' "$t" "$bytes" "$(awk -v b="$bytes" 'BEGIN {printf "%.2f", b / 1048576}')"
done
armv7=$(stat -c %s target/armv7-unknown-linux-gnueabihf/release/knockgate)
if [ "$armv7" -gt "$BUDGET" ]; then
    echo "arm.sh: the armv7 binary is $armv7 bytes, over its budget of $BUDGET (4 MiB)" >&2
    exit 1
fi
echo "armv7 size budget: $armv7 <= $BUDGET bytes: ok"

echo "== ARM: the release binaries run under qemu-user"
for t in "${TARGETS[@]}"; do
    bash scripts/cross.sh cargo "$t" run --release --locked --quiet \
        -- check --config examples/knockgate.toml
done

echo "== ARM: cargo test --lib --bins, and tests/it's cli module, under qemu-user (namespace tests: native only)"
skips=()
for s in "${QEMU_SKIP[@]}"; do skips+=(--skip "$s"); done
mkdir -p target
: >target/arm-test.log
status=0
for t in "${TARGETS[@]}"; do
    echo "-- $t"
    set +e
    bash scripts/cross.sh cargo "$t" test --locked --lib --bins --no-fail-fast \
        -- "${skips[@]}" 2>&1 | tee -a target/arm-test.log
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    # The integration tests are one binary (tests/it): its cli module, by name.
    bash scripts/cross.sh cargo "$t" test --locked --test it --no-fail-fast \
        -- cli:: 2>&1 | tee -a target/arm-test.log
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    set -e
done
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' target/arm-test.log | grep -Eo '[0-9]+ passed' | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '^test result: .*; ([0-9]+) failed' target/arm-test.log | grep -Eo '[0-9]+ failed' | awk '{s += $1} END {print s + 0}')
echo "arm.sh: done in $((SECONDS - start)) s"
echo "arm: $passed passed, $failed failed"
exit "$status"
