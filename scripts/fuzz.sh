#!/usr/bin/env bash
# Fuzzes every target of fuzz/ (cargo-fuzz, libFuzzer with AddressSanitizer) for FUZZ_SECONDS
# seconds each (default 60) and fails on any crash, printing per target the executions, the
# time and the crashes. Installs what it needs (idempotent). See README, "Fuzzing".
#
#   scripts/fuzz.sh                                 # CI: every target, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh                # a long run
#   FUZZ_SECONDS=30 FUZZ_TARGETS="wire http" scripts/fuzz.sh
#   scripts/fuzz.sh --tools-only                    # only installs the pinned cargo-fuzz
#
# Stable Rust: cargo-fuzz passes nightly flags (-Zsanitizer=address and others) to rustc;
# RUSTC_BOOTSTRAP=1 lets stable rustc take them. The ASan runtime ships with the x86_64 std.
# Each target starts from its committed seeds (fuzz/corpus/<target>/, read only) and from what
# earlier runs on this machine found (fuzz/target/corpus/<target>/, where new inputs go). A
# crash leaves its input in fuzz/artifacts/<target>/, and the log printed shows it as a byte
# array, for a regression test (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
cargo_fuzz_version=0.13.2
export RUSTC_BOOTSTRAP=1

t0=$(date +%s)
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
    echo "== installing cargo-fuzz $cargo_fuzz_version"
    cargo install --quiet --locked --version "$cargo_fuzz_version" cargo-fuzz
fi
# Only the pinned cargo-fuzz (.ci/run installs it in the background during the tests).
[ "${1:-}" != --tools-only ] || exit 0
# libfuzzer-sys compiles libFuzzer (C++).
if ! command -v c++ >/dev/null; then
    echo "== installing g++"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi
t1=$(date +%s)

cd fuzz
echo "== cargo fmt --check (the fuzz crate)"
cargo fmt --check
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
echo "== cargo fuzz build (AddressSanitizer, debug assertions)"
cargo fuzz build
t2=$(date +%s)

mkdir -p target/logs
summary=()
failed=()
for t in $targets; do
    echo "== fuzzing $t for $seconds s"
    mkdir -p "target/corpus/$t" "artifacts/$t"
    log="target/logs/$t.log"
    start=$(date +%s)
    set +e
    # -timeout: an input that takes 10 s is a hang, and a hang counts as a crash.
    cargo fuzz run "$t" "target/corpus/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1
    status=$?
    set -e
    took=$(($(date +%s) - start))
    stat() { grep -Eo "^stat::$1: *[0-9]+" "$log" | grep -Eo '[0-9]+$' | tail -1; }
    execs=$(stat number_of_executed_units)
    rate=$(stat average_exec_per_sec)
    found=$(stat new_units_added)
    # libFuzzer stops at the first crash: a target has 0 or 1.
    crashes=0
    if [ "$status" != 0 ]; then
        crashes=1
        failed+=("$t")
        echo "fuzz.sh: $t crashed (exit $status); its log without the progress lines:" >&2
        grep -v '^#[0-9]' "$log" | tail -n 150 >&2
    fi
    summary+=("$(printf '%-14s %12s %8s %6s s %8s %8s' "$t" "${execs:-?}" "${rate:-?}" \
        "$took" "${found:-?}" "$crashes")")
done
t3=$(date +%s)

echo
printf '%-14s %12s %8s %8s %8s %8s\n' target executions exec/s time "new" crashes
printf '%s\n' "${summary[@]}"
echo "fuzz.sh: install $((t1 - t0)) s, build $((t2 - t1)) s, fuzzing $((t3 - t2)) s," \
    "total $((t3 - t0)) s; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')," \
    "$(date -u +%Y-%m-%d)"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
