#!/usr/bin/env python3
"""Kconfig check of the KNOCKGATE external tree, without Buildroot.

Parses Config.stub.in (a small model of Buildroot's symbols, next to this
script in scripts/buildroot/, outside the external tree) with the tree's
Config.in files, then loads every configs/*_defconfig. Fails when:
- parsing warns, or a BR2_* symbol is referenced but defined nowhere;
- the tree defines a symbol outside BR2_PACKAGE_KNOCKGATE*, or one that
  Buildroot (the stub) also defines, or Buildroot's knock symbols;
- a defconfig assigns a symbol of the tree that is unknown, assigns a
  symbol twice, or a modelled symbol does not end up with the value assigned;
- BR2_PACKAGE_KNOCKGATE (and what it selects) is not y in a defconfig;
- the model is vacuous: a config without a Rust-capable toolchain still
  gets BR2_PACKAGE_KNOCKGATE=y.
Usage: kconfig_check.py BUILDROOT_EXTERNAL_DIR
"""
import glob
import os
import re
import sys

import kconfiglib

NAMESPACE = "BR2_PACKAGE_KNOCKGATE"
SELECTED = ["BR2_PACKAGE_HOST_RUSTC", "BR2_PACKAGE_LIBPCAP", "BR2_PACKAGE_IPTABLES"]
ASSIGN = re.compile(r"^(BR2_\w+)=(.*)$")
NOT_SET = re.compile(r"^# (BR2_\w+) is not set$")

errors = []


def error(msg):
    errors.append(msg)
    print("FAIL: " + msg)


def main():
    ext = os.path.abspath(sys.argv[1])
    os.environ["BR2_EXTERNAL_KNOCKGATE_PATH"] = ext
    # Buildroot's symbols carry no CONFIG_ prefix in .config and defconfigs.
    os.environ["CONFIG_"] = ""
    stub = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Config.stub.in")
    kconf = kconfiglib.Kconfig(stub, warn_to_stderr=False)
    kconf.warn_assign_undef = True
    kconf.warn_assign_override = True
    for w in kconf.warnings:
        error("kconfig parse: " + w)
    kconf.warnings = []

    ours, theirs = set(), set()
    for sym in kconf.unique_defined_syms:
        for node in sym.nodes:
            path = os.path.abspath(os.path.join(kconf.srctree, node.filename))
            (theirs if path == os.path.abspath(stub) else ours).add(sym.name)
    for name in sorted(ours):
        if not (name == NAMESPACE or name.startswith(NAMESPACE + "_")):
            error(f"{name}: defined by the tree outside the {NAMESPACE}* namespace")
        if name in theirs:
            error(f"{name}: defined both by the tree and by Buildroot (stub)")
        if name == "BR2_PACKAGE_KNOCK" or name.startswith("BR2_PACKAGE_KNOCK_"):
            error(f"{name}: clashes with Buildroot's knock package")
    if NAMESPACE not in ours:
        error(f"{NAMESPACE} is not defined by the tree")
    for sym in kconf.syms.values():
        if not sym.nodes and sym.name.startswith("BR2_"):
            error(f"{sym.name}: referenced but defined neither in the tree nor in the stub")
    print(f"ok: Config.in parsed; tree symbols: {', '.join(sorted(ours))}")

    defconfigs = sorted(glob.glob(os.path.join(ext, "configs", "*_defconfig")))
    if not defconfigs:
        error("no configs/*_defconfig")
    for path in defconfigs:
        name = os.path.basename(path)
        n_errors = len(errors)
        assigned, seen = {}, set()
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                m = ASSIGN.match(line) or NOT_SET.match(line)
                if not m:
                    if line and not line.startswith("#"):
                        error(f"{name}: not a defconfig line: {line!r}")
                    continue
                sym = m.group(1)
                if sym in seen:
                    error(f"{name}: {sym} assigned twice")
                seen.add(sym)
                assigned[sym] = m.group(2) if m.re is ASSIGN else "n"
        kconf.warnings = []
        kconf.load_config(path)
        unmodelled = 0
        for w in kconf.warnings:
            m = re.search(r"undefined symbol (BR2_\w+)", w)
            if m and not m.group(1).startswith(NAMESPACE):
                unmodelled += 1
                continue
            error(f"{name}: {w}")
        for sym, value in assigned.items():
            if sym.startswith(NAMESPACE) and sym not in ours:
                error(f"{name}: {sym} is not a symbol of the tree")
            if sym not in kconf.syms or not kconf.syms[sym].nodes:
                continue
            got = kconf.syms[sym].str_value
            if kconf.syms[sym].type in (kconfiglib.STRING,):
                value = value.strip('"')
            if got != value:
                error(f"{name}: {sym} assigned {value} but is {got or 'n'} (dependencies)")
        for sym in [NAMESPACE] + SELECTED:
            if kconf.syms[sym].str_value != "y":
                error(f"{name}: {sym} is not y")
        if kconf.syms["BR2_PACKAGE_KNOCK"].str_value == "y":
            error(f"{name}: enables Buildroot's knock (knockd) too")
        if len(errors) == n_errors:
            print(f"ok: {name}: {NAMESPACE}=y with its selects; "
                  f"{len(assigned)} lines, {unmodelled} Buildroot symbols not modelled")

    # The model must be able to say no: ARMv7-A-less 32-bit ARM without a
    # glibc/musl toolchain has no Rust target.
    kconf.warnings = []
    kconf.unset_values()
    for line in ["BR2_arm=y", "BR2_TOOLCHAIN_EXTERNAL=y", f"{NAMESPACE}=y"]:
        sym, val = line.split("=")
        kconf.syms[sym].set_value(val)
    if kconf.syms[NAMESPACE].str_value != "n":
        error("self-test: knockgate enabled without a Rust-capable toolchain")
    else:
        print("ok: self-test: no Rust-capable toolchain, no knockgate")

    if errors:
        print(f"kconfig_check: {len(errors)} error(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
