#!/usr/bin/env bash
# Checks of buildroot/, the Buildroot external tree (BR2_EXTERNAL) of the knockgate firmware.
#
#   scripts/buildroot-check.sh                 static checks, no Buildroot needed (CI)
#   BUILDROOT=/path/to/buildroot scripts/buildroot-check.sh
#                                              also the checks that need a Buildroot source tree
#
# The helpers and their data live in scripts/buildroot/, outside the external tree (they are
# not part of what BR2_EXTERNAL adds, and check-package would lint them as Buildroot code).
#
# Static (a few seconds once the tools are there):
#   (a) installs what is missing: shellcheck (apt), kconfiglib (pip, pinned);
#   (b) scripts/buildroot/kconfig_check.py: Config.in + package Config.in parsed with kconfiglib
#       against scripts/buildroot/Config.stub.in (Buildroot's symbols that we use), each defconfig
#       loaded: tree symbols known, assigned values kept, BR2_PACKAGE_KNOCKGATE=y with its selects;
#   (c) shellcheck on every shell script of buildroot/, image/ and scripts/;
#   (d) scripts/buildroot/conventions.py: Buildroot's check-package rules that apply to the tree,
#       the knock/knockgate name clash, the version against Cargo.toml, and each defconfig against
#       scripts/buildroot/defconfigs.sha256, the recorded savedefconfig output.
# With BUILDROOT (needs only host gcc and make, no download, no build):
#   (e) every symbol of the stub exists in that Buildroot;
#   (f) Buildroot's own utils/check-package --br2-external on every file of buildroot/;
#   (g) each defconfig: make <defconfig>, make savedefconfig, identical to the committed file;
#       then scripts/buildroot/defconfigs.sha256 is rewritten from the identical outputs.
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
HELPERS=scripts/buildroot
KCONFIGLIB_VERSION=14.1.0
start=$(date +%s)
failed=0

step() { printf '\n== %s\n' "$*"; }

step "(a) tools"
if ! command -v shellcheck >/dev/null; then
    echo "installing shellcheck (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi
have_kconfiglib=$(python3 -c 'import importlib.metadata as m; print(m.version("kconfiglib"))' 2>/dev/null || true)
if [ "$have_kconfiglib" != "$KCONFIGLIB_VERSION" ]; then
    echo "installing kconfiglib $KCONFIGLIB_VERSION (pip)"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check \
        "kconfiglib==$KCONFIGLIB_VERSION"
fi
echo "ok: $(shellcheck --version | sed -n 's/^version: /shellcheck /p'), kconfiglib $KCONFIGLIB_VERSION"

step "(b) Kconfig (kconfiglib against $HELPERS/Config.stub.in)"
python3 "$HELPERS/kconfig_check.py" buildroot || failed=1

step "(c) shellcheck"
scripts=()
while IFS= read -r -d '' f; do
    case "$f" in
        *.sh) scripts+=("$f") ;;
        *) head -n 1 "$f" | grep -Eq '^#!(/usr/bin/env |/bin/)(ba)?sh' && scripts+=("$f") ;;
    esac
done < <(find buildroot -type f ! -name '*.py' ! -path '*/__pycache__/*' -print0 | sort -z)
# The image's scripts too (shared rootfs overlay, initramfs, builder, boot test, CI steps).
for f in image/*.sh image/*/*.sh image/initramfs/init image/rootfs/usr/sbin/knockgate-firewall scripts/*.sh .ci/run; do
    [ -f "$f" ] && scripts+=("$f")
done
if shellcheck -x "${scripts[@]}"; then
    echo "ok: shellcheck clean: ${scripts[*]}"
else
    failed=1
fi

step "(d) Buildroot conventions"
python3 "$HELPERS/conventions.py" "$TOP" || failed=1

if [ -n "${BUILDROOT:-}" ]; then
    BUILDROOT=$(cd "$BUILDROOT" && pwd)
    version=$(make -s -C "$BUILDROOT" --no-print-directory print-version 2>/dev/null || echo unknown)
    commit=$(git -C "$BUILDROOT" rev-parse HEAD 2>/dev/null || echo "not a git checkout")

    step "(e) stub symbols exist in Buildroot $version"
    missing=0
    while read -r sym; do
        if ! grep -rEq --include='Config.in*' "^(menu)?config $sym\$" "$BUILDROOT"; then
            echo "FAIL: $sym (Config.stub.in) is not a Buildroot symbol"
            missing=1
        fi
    done < <(sed -n 's/^config \(BR2_[A-Za-z0-9_]*\)$/\1/p' "$HELPERS/Config.stub.in")
    if [ "$missing" = 0 ]; then echo "ok: every stub symbol is defined by Buildroot"; else failed=1; fi

    step "(f) utils/check-package --br2-external"
    mapfile -t files < <(find "$TOP/buildroot" -type f ! -path '*/__pycache__/*' | sort)
    if (cd "$BUILDROOT" && utils/check-package --br2-external "${files[@]}"); then
        echo "ok: check-package clean (${#files[@]} files)"
    else
        failed=1
    fi

    step "(g) defconfig round trip (make <defconfig>; make savedefconfig)"
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
    roundtrip=0
    for path in buildroot/configs/*_defconfig; do
        name=$(basename "$path")
        if ! { make -s -C "$BUILDROOT" O="$out/$name" BR2_EXTERNAL="$TOP/buildroot" "$name" \
            && make -s -C "$BUILDROOT" O="$out/$name" savedefconfig BR2_DEFCONFIG="$out/$name.saved"
        } >"$out/$name.log" 2>&1; then
            echo "FAIL: $name: make failed:"
            cat "$out/$name.log"
            roundtrip=1
            continue
        fi
        if diff -u "$path" "$out/$name.saved"; then
            echo "ok: $name: savedefconfig output identical"
        else
            echo "FAIL: $name: differs from its savedefconfig output (diff above)"
            roundtrip=1
        fi
    done
    if [ "$roundtrip" = 0 ]; then
        {
            echo "# sha256 of each defconfig as produced by Buildroot's savedefconfig (round trip"
            echo "# defconfig -> savedefconfig identical). Checked with Buildroot $version"
            echo "# ($commit). Regenerate only from a real round"
            echo "# trip: BUILDROOT=/path/to/buildroot scripts/buildroot-check.sh"
            (cd buildroot/configs && sha256sum ./*_defconfig | sed 's|  \./|  |')
        } >"$HELPERS/defconfigs.sha256"
        echo "ok: $HELPERS/defconfigs.sha256 written from the round trip"
    else
        failed=1
    fi
fi

echo
if [ "$failed" != 0 ]; then
    echo "buildroot-check: FAILED ($(($(date +%s) - start)) s)"
    exit 1
fi
echo "buildroot-check: all passed ($(($(date +%s) - start)) s)"
