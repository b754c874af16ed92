#!/usr/bin/env python3
"""Buildroot conventions for the KNOCKGATE external tree, without Buildroot.

Encodes the rules of Buildroot's utils/check-package (and its manual) that
apply to this tree, plus the tree's own invariants. Usage:
conventions.py REPO_TOP (the directory holding buildroot/ and Cargo.toml).
The record of the defconfigs' savedefconfig output, defconfigs.sha256, is
read next to this script (scripts/buildroot/), outside the external tree.
Prints what passed; exits 1 on any violation.
"""
import glob
import hashlib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RECORD = os.path.join(HERE, "defconfigs.sha256")

errors = []
passed = []


def error(where, msg):
    errors.append(f"{where}: {msg}")
    print(f"FAIL: {where}: {msg}")


def ok(msg):
    passed.append(msg)
    print("ok: " + msg)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def rel(path):
    return os.path.relpath(path, TOP)


# --- every text file: lib.py's TrailingSpace, NewlineAtEof, EmptyLastLine,
# ConsecutiveEmptyLines (not for Python: PEP 8), Utf8Characters (ASCII only in
# .mk and Config.in).
def check_text(path):
    n = len(errors)
    text = read(path)
    if not text.endswith("\n"):
        error(rel(path), "no newline at end of file")
    lines = text.split("\n")[:-1]
    if lines and lines[-1].strip() == "":
        error(rel(path), "empty last line")
    for i, line in enumerate(lines, 1):
        if line != line.rstrip():
            error(f"{rel(path)}:{i}", "trailing whitespace")
        if i > 1 and line.strip() == "" and lines[i - 2].strip() == "" and not path.endswith(".py"):
            error(f"{rel(path)}:{i}", "consecutive empty lines")
    base = os.path.basename(path)
    if (base.endswith(".mk") or base.startswith("Config.in")) and not text.isascii():
        error(rel(path), "non-ASCII characters")
    return len(errors) == n


# --- Config.in: lib_config.py's Indent, HelpText, NoDefaultN,
# AttributesOrder (the part that matters here).
ENTRY = re.compile(r"^(config|menuconfig|comment|menu|endmenu|if|endif|choice|endchoice|source|mainmenu)\b")
ATTR = re.compile(r"^\t(bool|tristate|string|int|hex|prompt|default|depends on|select|imply|range|help|option)\b")
HELP_TEXT = re.compile(r"^\t  .{,62}$")
URL_ONLY = re.compile(r"^\t  (http|https|git)://\S*$")


def check_config_in(path):
    n = len(errors)
    lines = read(path).split("\n")[:-1]
    in_help = False
    order = {"bool": 0, "tristate": 0, "string": 0, "int": 0, "hex": 0,
             "prompt": 0, "default": 1, "depends on": 2, "select": 3,
             "imply": 3, "range": 3, "help": 4, "option": 4}
    last = -1
    continued = False
    for i, line in enumerate(lines, 1):
        where = f"{rel(path)}:{i}"
        if in_help:
            if line == "" or line.startswith("\t  "):
                if line and not HELP_TEXT.match(line) and not URL_ONLY.match(line):
                    error(where, "help text wider than 72 columns (tab + 2 spaces + 62)")
                continue
            in_help = False
        if line == "" or line.lstrip().startswith("#"):
            continued = False
            continue
        if continued:
            if not line.startswith("\t\t"):
                error(where, "continuation line not indented with two tabs")
            continued = line.endswith("\\")
            continue
        if ENTRY.match(line):
            last = -1
            continue
        m = ATTR.match(line)
        if not m:
            error(where, "attribute not indented with exactly one tab, or unknown")
            continue
        attr = m.group(1)
        if line == "\tdefault n":
            error(where, "'default n' is the default")
        if attr == "help":
            if line != "\thelp":
                error(where, "help must be a lone '\\thelp' line")
            in_help = True
        if order[attr] < last:
            error(where, f"'{attr}' out of order (type, default, depends on, select, help)")
        last = order[attr]
        continued = line.endswith("\\")
    return len(errors) == n


# --- .mk: lib_mk.py's PackageHeader, Indent, SpaceBeforeBackslash,
# TrailingBackslash, TypoInPackageVariable, VariableWithBraces,
# DoNotInstallToHostdirUsr.
def check_mk(path, pkg):
    n = len(errors)
    lines = read(path).split("\n")[:-1]
    hashes = "#" * 80
    expect = [hashes, "#", f"# {pkg}", "#", hashes, ""]
    if lines[:6] != expect:
        error(rel(path), f"header must be the 80-'#' block naming '{pkg}' then an empty line")
    prefix = pkg.upper().replace("-", "_") + "_"
    in_define = False
    continued = False
    for i, line in enumerate(lines, 1):
        where = f"{rel(path)}:{i}"
        if re.match(r"^.*(  |\t ?)\\$", line):
            error(where, "use a single space before a backslash")
        if line.endswith("\\") and (i == len(lines) or lines[i].strip() == ""):
            error(where, "backslash continues into an empty line")
        if re.match(r"^[^#].*[^$]\$\{\w+\}", line):
            error(where, "use $() for make variables, not ${}")
        if re.match(r"^[^#].*\$\(HOST_DIR\)/usr", line):
            error(where, "install to $(HOST_DIR), not $(HOST_DIR)/usr")
        if re.match(r"^define\s", line):
            in_define = True
            name = line.split()[1]
            if not name.startswith(prefix):
                error(where, f"'{name}' lacks the {prefix} prefix")
            continue
        if line.startswith("endef"):
            in_define = False
            continue
        if in_define or continued:
            if line and not line.startswith("\t"):
                error(where, "indent with a tab")
            continued = line.endswith("\\")
            continue
        continued = line.endswith("\\")
        if line.startswith((" ", "\t")) and line.strip():
            error(where, "unexpected indentation outside a define or continuation")
        m = re.match(r"^([A-Za-z0-9_]+)\s*(\+=|:=|\?=|=)", line)
        if m and not m.group(1).startswith(prefix):
            error(where, f"variable '{m.group(1)}' lacks the {prefix} prefix")
        m = re.match(r"^\$\(eval \$\((\S+)\)\)$", line)
        if m and m.group(1) not in ("generic-package", "cargo-package"):
            error(where, f"unexpected infrastructure {m.group(1)}")
    if "$(eval $(cargo-package))" not in lines:
        error(rel(path), "does not use the cargo-package infrastructure")
    return len(errors) == n


# --- .hash: lib_hash.py (three fields, known type, right length, two spaces).
HASH_LEN = {"md5": 32, "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128}


def check_hash(path):
    n = len(errors)
    for i, line in enumerate(read(path).split("\n")[:-1], 1):
        where = f"{rel(path)}:{i}"
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3:
            error(where, "expected: TYPE  HASH  FILE")
            continue
        if fields[0] not in HASH_LEN:
            error(where, f"unknown hash type {fields[0]}")
        elif len(fields[1]) != HASH_LEN[fields[0]] or not re.fullmatch(r"[0-9a-f]+", fields[1]):
            error(where, f"malformed {fields[0]} hash")
        if not re.fullmatch(r"\S+  \S+  \S+", line):
            error(where, "fields separated by two spaces")
    return len(errors) == n


# --- SysV init scripts: lib_sysv.py (Variables, Indent, NotExecutable).
def check_init(path):
    n = len(errors)
    base = os.path.basename(path)
    text = read(path)
    daemon = re.findall(r"^DAEMON=[\"']?([^\"'\n]*)[\"']?$", text, re.M)
    if len(daemon) != 1:
        error(rel(path), "exactly one DAEMON= line expected")
    else:
        if "/" in daemon[0]:
            error(rel(path), "DAEMON must not include a path")
        if not re.fullmatch(r"S\d\d" + re.escape(daemon[0]), base):
            error(rel(path), f"file name must be S<nn>{daemon[0]}")
    for pid in re.findall(r"^PIDFILE=[\"']?([^\"'\n]*)[\"']?$", text, re.M):
        if not re.match(r"/var/run/(\$DAEMON|\$\{DAEMON\})\.pid", pid):
            error(rel(path), 'PIDFILE must be "/var/run/$DAEMON.pid"')
    for i, line in enumerate(text.split("\n"), 1):
        if re.match(r"^\t* ", line.rstrip()):
            error(f"{rel(path)}:{i}", "indent with tabs")
    executable = os.access(path, os.X_OK)
    in_overlay = "/etc/init.d/" in path
    if in_overlay and not executable:
        error(rel(path), "overlay init scripts must be executable")
    if not in_overlay and executable:
        error(rel(path), "package files must not be executable ($(INSTALL) -m 0755 does it)")
    return len(errors) == n


def main():
    global TOP
    TOP = os.path.abspath(sys.argv[1])
    br = os.path.join(TOP, "buildroot")

    files = []
    for root, dirs, names in os.walk(br):
        dirs[:] = [d for d in dirs if d not in ("__pycache__",)]
        files += [os.path.join(root, f) for f in names if not f.endswith(".pyc")]
    files.sort()
    if all(check_text(f) for f in files if not f.endswith(".png")):
        ok(f"{len(files)} files: no trailing whitespace, newline at EOF, no doubled empty lines")

    # external.desc / external.mk / Config.in
    desc = read(os.path.join(br, "external.desc"))
    if re.search(r"^name: KNOCKGATE$", desc, re.M) and re.search(r"^desc: .+", desc, re.M):
        ok("external.desc: name KNOCKGATE")
    else:
        error("buildroot/external.desc", "needs 'name: KNOCKGATE' and a 'desc:' line")
    mk = read(os.path.join(br, "external.mk"))
    if "include $(sort $(wildcard $(BR2_EXTERNAL_KNOCKGATE_PATH)/package/*/*.mk))" in mk:
        ok("external.mk includes package/*/*.mk")
    else:
        error("buildroot/external.mk", "must include $(BR2_EXTERNAL_KNOCKGATE_PATH)/package/*/*.mk")

    top_config = read(os.path.join(br, "Config.in"))
    pkgs = sorted(os.path.basename(os.path.dirname(p))
                  for p in glob.glob(os.path.join(br, "package", "*", "Config.in")))
    for pkg in pkgs:
        line = f'source "$BR2_EXTERNAL_KNOCKGATE_PATH/package/{pkg}/Config.in"'
        if line not in top_config.split("\n"):
            error("buildroot/Config.in", f"does not source package/{pkg}/Config.in")
    configs = [os.path.join(br, "Config.in")] + [os.path.join(br, "package", p, "Config.in") for p in pkgs]
    if all([check_config_in(c) for c in configs]):
        ok(f"{len(configs)} Config.in files: tab indentation, help text <= 72 columns, attribute order")

    # Packages: no clash with Buildroot's knock, name = directory, header,
    # variable prefix, hash files.
    for pkg in pkgs:
        d = os.path.join(br, "package", pkg)
        if pkg == "knock" or pkg.startswith("knock-"):
            error(rel(d), "clashes with Buildroot's knock package")
        cfg = read(os.path.join(d, "Config.in"))
        syms = re.findall(r"^(?:menu)?config\s+(BR2_\w+)", cfg, re.M)
        want = "BR2_PACKAGE_" + pkg.upper().replace("-", "_")
        if not syms or syms[0] != want or any(not s.startswith(want) for s in syms):
            error(rel(d), f"symbols must be {want}[_*], got {syms}")
        if any(s == "BR2_PACKAGE_KNOCK" or s.startswith("BR2_PACKAGE_KNOCK_") for s in syms):
            error(rel(d), "defines a symbol of Buildroot's knock package")
        mkfile = os.path.join(d, pkg + ".mk")
        if not os.path.exists(mkfile):
            error(rel(d), f"no {pkg}.mk")
        elif check_mk(mkfile, pkg):
            ok(f"package/{pkg}/{pkg}.mk: header block, {pkg.upper()}_ prefix, tab indentation, cargo-package")
        for h in glob.glob(os.path.join(d, "*.hash")):
            if check_hash(h):
                ok(f"{rel(h)}: hash file format")
    if "knockgate" in pkgs:
        cfg = read(os.path.join(br, "package", "knockgate", "Config.in"))
        if "BR2_PACKAGE_KNOCK)" in cfg and '"knock"' in cfg:
            ok("package/knockgate/Config.in help says it is not Buildroot's knock (BR2_PACKAGE_KNOCK)")
        else:
            error("buildroot/package/knockgate/Config.in",
                  "help must tell it apart from Buildroot's knock (BR2_PACKAGE_KNOCK)")
        # Version in step with Cargo.toml; local source.
        kmk = read(os.path.join(br, "package", "knockgate", "knockgate.mk"))
        cargo = read(os.path.join(TOP, "Cargo.toml"))
        v_mk = re.search(r"^KNOCKGATE_VERSION = (\S+)$", kmk, re.M)
        v_cargo = re.search(r'^version = "([^"]+)"', cargo, re.M)
        if v_mk and v_cargo and v_mk.group(1) == v_cargo.group(1):
            ok(f"KNOCKGATE_VERSION {v_mk.group(1)} = Cargo.toml version")
        else:
            error("buildroot/package/knockgate/knockgate.mk", "KNOCKGATE_VERSION differs from Cargo.toml's version")
        if not os.path.exists(os.path.join(TOP, "Cargo.lock")):
            error("Cargo.lock", "missing: cargo --locked needs it")

    # Init scripts anywhere in the tree.
    inits = [f for f in files if re.fullmatch(r"S\d\d.+", os.path.basename(f))]
    if all([check_init(f) for f in inits]):
        ok(f"{len(inits)} init scripts: S<nn><DAEMON> names, DAEMON/PIDFILE, tabs, modes")

    # Shell scripts must be executable (and are shellchecked by the caller).
    for f in files:
        if f.endswith(".sh") and not os.access(f, os.X_OK):
            error(rel(f), "shell script not executable")

    # Defconfigs: our own paths exist; the overlay from image/rootfs
    # (maintained elsewhere) may be absent here; savedefconfig record.
    defconfigs = sorted(glob.glob(os.path.join(br, "configs", "*_defconfig")))
    record = {}
    for line in read(RECORD).split("\n"):
        if line and not line.startswith("#"):
            digest, name = line.split("  ", 1)
            record[name] = digest
    n = len(errors)
    for path in defconfigs:
        name = os.path.basename(path)
        text = read(path)
        if not re.fullmatch(r"knockgate_\w+_defconfig", name):
            error(rel(path), "defconfigs are named knockgate_<board>_defconfig")
        for m in re.finditer(r"\$\(BR2_EXTERNAL_KNOCKGATE_PATH\)/([^\s\"]+)", text):
            target = os.path.normpath(os.path.join(br, m.group(1)))
            if rel(target) == os.path.join("image", "rootfs"):
                if not os.path.isdir(target):
                    print(f"note: {name}: {rel(target)} (shared overlay, maintained outside buildroot/) is absent here")
                continue
            if not os.path.exists(target):
                error(rel(path), f"{m.group(0)} does not exist")
        for needed in ["BR2_PACKAGE_KNOCKGATE=y",
                       'BR2_ROOTFS_OVERLAY="$(BR2_EXTERNAL_KNOCKGATE_PATH)/../image/rootfs '
                       '$(BR2_EXTERNAL_KNOCKGATE_PATH)/board/knockgate/rootfs-overlay"',
                       "BR2_DOWNLOAD_FORCE_CHECK_HASHES=y"]:
            if needed not in text.split("\n"):
                error(rel(path), f"lacks {needed}")
        digest = hashlib.sha256(text.encode()).hexdigest()
        if record.get(name) != digest:
            error(rel(path), "differs from the savedefconfig output recorded in "
                  f"{rel(RECORD)}: redo the round trip "
                  "(BUILDROOT=/path/to/buildroot scripts/buildroot-check.sh)")
    for name in record:
        if not os.path.exists(os.path.join(br, "configs", name)):
            error(rel(RECORD), f"records {name}, which does not exist")
    if len(errors) == n:
        ok(f"{len(defconfigs)} defconfigs: paths exist, knockgate and both overlays, "
           f"identical to their recorded savedefconfig output")

    if errors:
        print(f"conventions: {len(errors)} violation(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
