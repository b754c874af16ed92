#!/usr/bin/python3
"""The boot-path check: would this card boot on each Raspberry Pi it claims, and bring up eth0
and wlan0? Read from the card's own files, without hardware (no emulator models the boards'
regulators, PHYs and radios as they are).

    scripts/bootpath-check.py CARD.img [--initrd FILE] [--board NAME ...] [--unsupported NAME ...]
                              [--without MODULE ...]

For every board: the firmware's choice of device tree (config.txt and the DTB on the boot
partition); in that DTB, the SD host the root file system is on and, transitively through
phandles, everything it needs before it probes (clocks, *-supply, pinctrl-*, power-domains,
resets, dmas, mboxes, phys, the regulators' and power sequences' GPIO controllers, the
firmware node, the parent buses); each of those nodes with a `compatible` must have a driver
built into the kernel or a module in the initramfs, matched as the kernel matches `of:`
aliases (modules.alias patterns against the node's modalias). Then the same for eth0 and the
Wi-Fi's SDIO host against the root file system's modules (udev loads them there), and the
Wi-Fi firmware and nvram files brcmfmac asks for with the board's root compatible.

Built-in drivers: a kernel whose modules.builtin.modinfo lists `alias=of:` entries (Linux 6.5
and later) is matched by those. Debian 12's 6.1 lists none, and early drivers (IRQCHIP_DECLARE,
CLK_OF_DECLARE, TIMER_OF_DECLARE) are never listed: for those the check looks for the
compatible as a NUL-terminated string in the kernel image (every of_device_id table holds its
compatibles as text). A compatible that a module of the root file system matches is never
taken as built in: that driver is a module, and must be in the initramfs if the root needs it.

Needs python3-libfdt (Debian's package of dtc's libfdt), mtools and e2fsprogs (debugfs).
Exit status 1 if any board checked has a problem; every problem is a line starting "FAIL".
"""
import argparse
import fnmatch
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import libfdt

# The boards the card is for. `dtb` is the upstream device tree the firmware loads (chosen by
# name with upstream_kernel=1, or named by a config.txt section); `filter` the config.txt
# section that applies to that board only; `root_host` the compatible of the SD host the card
# sits in; `eth` whether the board has Ethernet; `wifi` the brcmfmac firmware base names the
# radio on that board asks for (the chip is found by SDIO at run time, not in the device tree;
# names from brcmfmac's table in drivers/net/wireless/broadcom/brcm80211/brcmfmac/sdio.c).
BOARDS = {
    "pi3b": dict(model="Raspberry Pi 3 Model B", dtb="bcm2837-rpi-3-b.dtb", filter="pi3",
                 root_host="brcm,bcm2835-sdhost", eth=True, wifi=["brcmfmac43430-sdio"]),
    "pi3b+": dict(model="Raspberry Pi 3 Model B+", dtb="bcm2837-rpi-3-b-plus.dtb", filter="pi3+",
                  root_host="brcm,bcm2835-sdhost", eth=True, wifi=["brcmfmac43455-sdio"]),
    "pi4b": dict(model="Raspberry Pi 4 Model B", dtb="bcm2711-rpi-4-b.dtb", filter="pi4",
                 root_host="brcm,bcm2711-emmc2", eth=True, wifi=["brcmfmac43455-sdio"]),
    "pi400": dict(model="Raspberry Pi 400", dtb="bcm2711-rpi-400.dtb", filter="pi400",
                  root_host="brcm,bcm2711-emmc2", eth=True, wifi=["brcmfmac43456-sdio"]),
    # The Pi 5's serial console is its debug UART (serial10, ttyAMA10): it has no mini UART.
    "pi5": dict(model="Raspberry Pi 5 Model B (C1 stepping)", dtb="bcm2712-rpi-5-b.dtb",
                filter="pi5", root_host="brcm,bcm2712-sdhci", eth=True,
                wifi=["brcmfmac43455-sdio"], console=("serial10", "ttyAMA10")),
    # The D0 stepping (2 GB boards, later all): the firmware asks for bcm2712d0-rpi-5-b.dtb,
    # its own name; on the card that is a copy of upstream's bcm2712-d-rpi-5-b.dtb.
    "pi5d0": dict(model="Raspberry Pi 5 Model B (D0 stepping)", dtb="bcm2712d0-rpi-5-b.dtb",
                  same_as="bcm2712-d-rpi-5-b.dtb", filter="pi5", root_host="brcm,bcm2712-sdhci",
                  eth=True, wifi=["brcmfmac43455-sdio"], console=("serial10", "ttyAMA10")),
    # The Zero 2 W's RM3 module came with two radio revisions: BCM43430A1 (the Pi 3 B's) and
    # later BCM43430B0, for which brcmfmac asks brcmfmac43430b0-sdio.bin.
    "pi02w": dict(model="Raspberry Pi Zero 2 W", dtb="bcm2837-rpi-zero-2-w.dtb", filter="pi02",
                  root_host="brcm,bcm2835-sdhost", eth=False,
                  wifi=["brcmfmac43430-sdio", "brcmfmac43430b0-sdio"]),
}

# Properties whose value is a list of (phandle, cells...) and the provider's cells property.
PHANDLE_LISTS = {
    "clocks": "#clock-cells", "resets": "#reset-cells", "power-domains": "#power-domain-cells",
    "dmas": "#dma-cells", "mboxes": "#mbox-cells", "phys": "#phy-cells",
    "interrupts-extended": "#interrupt-cells", "nvmem-cells": None,
}
# Properties holding single phandles (no cells).
PHANDLE_SINGLE = {"interrupt-parent", "mmc-pwrseq", "firmware", "phy-handle", "raspberrypi,firmware"}
# Compatibles handled by the kernel's core, not a driver of their own (of_platform populates
# the buses; PHYs bind by the ID read over MDIO; USB hubs by class).
GENERIC = {"simple-bus", "simple-mfd", "syscon", "simple-pm-bus"}
# Devices on discoverable buses, named in the device tree by vendor and product ID
# ("usb424,ec00", "pci1de4,1"): the driver binds by the bus's own alias; a hub or bridge without
# one is bound by its class. (bus prefix, alias prefix, class-bound?, what binds it then)
BUS_DEVICES = (
    ("pci", lambda v, d: f"pci:v0000{v:04X}d0000{d:04X}",
     lambda t, n: (t.strings(n, "device_type") or [""])[0] == "pci", "PCI bridge: bound by class by pcieport"),
    ("usb", lambda v, d: f"usb:v{v:04X}p{d:04X}d",
     lambda t, n: bool(t.cells(n, "#address-cells")) or "hub" in t.name(n) or "port" in t.name(n),
     "USB hub: bound by class by usbcore"),
)
NO_DRIVER = {"ethernet-phy-ieee802.3-c22", "ethernet-phy-ieee802.3-c45", "shared-dma-pool"}


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, **kw).stdout


class Card:
    """The card's files the check reads, extracted into a temporary directory."""

    def __init__(self, image, initrd, tmp):
        self.tmp = tmp
        parts = json.loads(run(["sfdisk", "-J", image]))["partitiontable"]["partitions"]
        boot, root = parts[0], parts[1]
        self.boot = os.path.join(tmp, "boot")
        os.mkdir(self.boot)
        run(["mcopy", "-s", "-n", "-i", f"{image}@@{boot['start'] * 512}", "::/*", self.boot])
        rootimg = os.path.join(tmp, "root.ext4")
        run(["dd", f"if={image}", f"of={rootimg}", "bs=512", f"skip={root['start']}",
             f"count={root['size']}", "conv=sparse", "status=none"])
        self.root = os.path.join(tmp, "root")
        os.makedirs(os.path.join(self.root, "lib/modules"))
        kvers = [line.split()[-1] for line in debugfs(rootimg, "ls -l /lib/modules").splitlines()
                 if line.split() and line.split()[-1] not in (".", "..")]
        if len(kvers) != 1:
            sys.exit(f"bootpath-check: {image}: expected one kernel in /lib/modules, found {kvers}")
        self.kver = kvers[0]
        mod = f"/lib/modules/{self.kver}"
        os.mkdir(os.path.join(self.root, mod[1:]))
        for f in ("modules.alias", "modules.dep", "modules.builtin", "modules.builtin.modinfo",
                  "modules.softdep"):
            debugfs(rootimg, f"dump {mod}/{f} {self.root}{mod}/{f}")
        debugfs(rootimg, f"rdump /lib/firmware {self.root}/lib")
        os.remove(rootimg)
        self.rootmods = Modules(os.path.join(self.root, mod[1:]))
        self.initrd = os.path.join(tmp, "initrd")
        os.mkdir(self.initrd)
        with open(initrd or os.path.join(self.boot, "initrd.img"), "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        subprocess.run(["cpio", "-idm", "--quiet"], input=data, cwd=self.initrd, check=True)
        if os.path.exists(os.path.join(self.initrd, mod[1:], "modules.alias")):
            self.initmods = Modules(os.path.join(self.initrd, mod[1:]), files=True)
        else:
            # An initramfs without modules.alias (the fixed list of knockgate's first images)
            # loads what it carries whatever the device tree says: its modules, by name.
            self.initmods = Modules.files_only(os.path.join(self.initrd, "lib/modules"))
        with open(os.path.join(self.boot, "vmlinuz"), "rb") as f:
            image_bytes = f.read()
        if image_bytes[:2] == b"\x1f\x8b":
            image_bytes = gzip.decompress(image_bytes)
        self.kernel_image = image_bytes
        self.config = read_config(os.path.join(self.boot, "config.txt"))

    def cmdline(self, sections):
        """The kernel command line the firmware passes: cmdline= of a section for the board."""
        name = "cmdline.txt"
        for section, key, value in self.config:
            if section in sections and key == "cmdline":
                name = value
        path = os.path.join(self.boot, name)
        if not os.path.exists(path):
            return name, None
        with open(path) as f:
            return name, f.read().split()


def debugfs(img, request):
    return run(["debugfs", "-R", request, img], stderr=subprocess.DEVNULL).decode()


class Modules:
    """A module directory: alias patterns, built-in list and modinfo, dependencies."""

    def __init__(self, path, files=False):
        self.path = path
        self.aliases = []  # (pattern, module)
        self.builtin_aliases = []
        self.builtin = set()
        self.deps = {}  # module name -> (file, [dependency files])
        with open(os.path.join(path, "modules.alias")) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[0] == "alias":
                    self.aliases.append((parts[1], parts[2]))
        with open(os.path.join(path, "modules.dep")) as f:
            for line in f:
                target, _, rest = line.partition(":")
                self.deps[modname(target)] = (target, rest.split())
        if os.path.exists(os.path.join(path, "modules.builtin")):
            with open(os.path.join(path, "modules.builtin")) as f:
                self.builtin = {modname(line.strip()) for line in f if line.strip()}
        info = os.path.join(path, "modules.builtin.modinfo")
        if os.path.exists(info):
            with open(info, "rb") as f:
                for entry in f.read().split(b"\0"):
                    name, _, rest = entry.decode(errors="replace").partition(".")
                    if rest.startswith("alias="):
                        self.builtin_aliases.append((rest[len("alias="):], name))
        self.files = files
        if files:
            missing = [t for t, _ in self.deps.values() if not os.path.exists(os.path.join(path, t))]
            if missing:
                sys.exit(f"bootpath-check: {path}: modules.dep names files that are not there: {missing[:5]}")

    @classmethod
    def files_only(cls, path):
        self = cls.__new__(cls)
        self.path, self.aliases, self.builtin_aliases, self.builtin, self.files = path, [], [], set(), True
        self.deps = {}
        for top, _, names in os.walk(path):
            for n in names:
                if re.search(r"\.ko(\.(xz|zst|gz))?$", n):
                    rel = os.path.relpath(os.path.join(top, n), path)
                    self.deps[modname(n)] = (rel, [])
        return self

    def match(self, modalias, builtin=False, naming=None):
        """The modules whose alias patterns match; with `naming`, only patterns that name one
        of these compatibles (not a generic one the node also lists)."""
        table = self.builtin_aliases if builtin else self.aliases
        return sorted({m for pattern, m in table if fnmatch.fnmatchcase(modalias, pattern)
                       and (naming is None or any(f"C{c}C" in pattern or pattern.endswith(f"C{c}")
                                                  for c in naming))})

    def closure(self, name):
        """The module and what modprobe loads before it (modules.dep)."""
        file, deps = self.deps[name]
        return [file] + deps


def modname(path):
    base = os.path.basename(path)
    return re.sub(r"\.ko(\.(xz|zst|gz))?$", "", base).replace("-", "_")


def read_config(path):
    """config.txt as [(section filter, key, value)]; `all` for lines before any section."""
    out, section = [], "all"
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            m = re.fullmatch(r"\[(.+)\]", line)
            if m:
                section = m.group(1).strip()
                continue
            key, _, value = line.partition("=")
            out.append((section, key.strip(), value.strip()))
    return out


# Which config.txt sections apply to which board (the firmware's conditional filters:
# [pi3] also covers the 3 B+, [pi4] the 400).
APPLIES = {
    "pi3b": {"all", "pi3"}, "pi3b+": {"all", "pi3", "pi3+"}, "pi4b": {"all", "pi4"},
    "pi400": {"all", "pi4", "pi400"}, "pi5": {"all", "pi5"}, "pi5d0": {"all", "pi5"},
    "pi02w": {"all", "pi02"},
}


class Tree:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.fdt = libfdt.FdtRo(f.read())

    def prop(self, node, name):
        try:
            return self.fdt.getprop(node, name)
        except libfdt.FdtException:
            return None

    def strings(self, node, name):
        p = self.prop(node, name)
        return [s.decode() for s in bytes(p).split(b"\0") if s] if p is not None else []

    def cells(self, node, name):
        p = self.prop(node, name)
        if p is None:
            return []
        b = bytes(p)
        return [int.from_bytes(b[i:i + 4], "big") for i in range(0, len(b) - len(b) % 4, 4)]

    def path(self, node):
        parts = []
        while node:
            parts.append(self.name(node))
            node = self.parent(node)
        return "/" + "/".join(reversed(parts))

    def name(self, node):
        return self.fdt.get_name(node)

    def by_phandle(self, ph):
        try:
            return self.fdt.node_offset_by_phandle(ph)
        except libfdt.FdtException:
            return None

    def parent(self, node):
        try:
            return self.fdt.parent_offset(node)
        except libfdt.FdtException:
            return None

    def nodes(self):
        node, depth = 0, 0
        while True:
            yield node
            try:
                node, depth = self.fdt.next_node(node, depth)
            except libfdt.FdtException:
                return
            if depth <= 0:
                return

    def enabled(self, node):
        status = self.strings(node, "status")
        return not status or status[0] in ("okay", "ok")

    def compatible_nodes(self, compat):
        return [n for n in self.nodes() if compat in self.strings(n, "compatible")]

    def alias(self, name):
        try:
            aliases = self.fdt.path_offset("/aliases")
        except libfdt.FdtException:
            return None
        target = self.strings(aliases, name)
        if not target:
            return None
        try:
            return self.fdt.path_offset(target[0])
        except libfdt.FdtException:
            return None

    def suppliers(self, node):
        """(property, node) of everything this node needs to probe."""
        out = []
        for off in self._props(node):
            name = self.fdt.get_property_by_offset(off).name
            if name.endswith("-supply") or name in PHANDLE_SINGLE:
                for ph in self.cells(node, name)[:1]:
                    out.append((name, self.by_phandle(ph)))
            elif name.startswith("pinctrl-") and name != "pinctrl-names":
                for ph in self.cells(node, name):
                    cfg = self.by_phandle(ph)
                    # A pin configuration's controller is its nearest ancestor with a driver.
                    while cfg is not None and not self.strings(cfg, "compatible"):
                        cfg = self.parent(cfg)
                    out.append((name, cfg))
            elif name in PHANDLE_LISTS or name == "gpios" or name == "gpio" or name.endswith("-gpios") or name.endswith("-gpio"):
                cells_name = PHANDLE_LISTS.get(name, "#gpio-cells")
                values = self.cells(node, name)
                i = 0
                while i < len(values):
                    provider = self.by_phandle(values[i])
                    if provider is None:
                        break
                    out.append((name, provider))
                    n = self.cells(provider, cells_name) if cells_name else [0]
                    i += 1 + (n[0] if n else 0)
        return [(p, n) for p, n in out if n is not None]

    def _props(self, node):
        try:
            off = self.fdt.first_property_offset(node)
        except libfdt.FdtException:
            return
        while True:
            yield off
            try:
                off = self.fdt.next_property_offset(off)
            except libfdt.FdtException:
                return

    def modalias(self, node):
        compat = "".join("C" + c for c in self.strings(node, "compatible"))
        dtype = (self.strings(node, "device_type") or ["<NULL>"])[0]
        return f"of:N{self.name(node).split('@')[0]}T{dtype}{compat}"


class Board:
    def __init__(self, card, key):
        self.card, self.key, self.b = card, key, BOARDS[key]
        self.problems, self.lines = [], []

    def fail(self, msg):
        self.problems.append(msg)
        self.lines.append("FAIL " + msg)

    def ok(self, msg):
        self.lines.append("  ok " + msg)

    def note(self, msg):
        self.lines.append("     " + msg)

    def check(self):
        card, b = self.card, self.b
        dtb = self.firmware_dtb()
        if dtb is None:
            return
        t = Tree(os.path.join(card.boot, dtb))
        self.tree = t
        root_compat = t.strings(0, "compatible")
        self.ok(f"device tree {dtb}: {root_compat[0] if root_compat else '?'}")
        # The root file system's SD host, and what it needs, from the initramfs.
        # (The card slot: the same host type also drives the Wi-Fi's SDIO, marked non-removable.)
        hosts = [n for n in t.compatible_nodes(b["root_host"])
                 if t.enabled(n) and t.prop(n, "non-removable") is None]
        if len(hosts) != 1:
            self.fail(f"root: {len(hosts)} enabled removable {b['root_host']} nodes in {dtb}, expected 1")
            return
        self.need(hosts[0], "root (initramfs)", card.initmods, initramfs=True)
        if "ext4" not in card.initmods.deps and "ext4" not in card.initmods.builtin:
            self.fail("root: ext4 is neither built in nor in the initramfs")
        # eth0 from the root file system's modules.
        eth = t.alias("ethernet0")
        if b["eth"]:
            if eth is None:
                self.fail(f"eth0: no ethernet0 alias in {dtb}")
            else:
                self.need(eth, "eth0", card.rootmods, initramfs=False)
        else:
            self.note("eth0: this board has no Ethernet")
        # wlan0: the SDIO host with the brcmfmac child, the driver, the firmware files.
        fmac = [n for n in t.compatible_nodes("brcm,bcm4329-fmac") if t.enabled(n)]
        if len(fmac) != 1:
            self.fail(f"wlan0: {len(fmac)} enabled brcm,bcm4329-fmac nodes in {dtb}, expected 1")
        else:
            self.need(t.parent(fmac[0]), "wlan0", card.rootmods, initramfs=False)
            if "brcmfmac" in card.rootmods.deps:
                self.ok("wlan0: brcmfmac (module, root file system; binds by SDIO ID)")
            elif "brcmfmac" in card.rootmods.builtin:
                self.ok("wlan0: brcmfmac (built in)")
            else:
                self.fail("wlan0: no brcmfmac module in the root file system")
            self.wifi_firmware(root_compat[0] if root_compat else "")
        # The serial console: the header's UART, with its driver there from the start.
        alias, tty = b.get("console", ("serial1", "ttyS1"))
        name, cmdline = card.cmdline(APPLIES[self.key])
        if cmdline is None:
            self.fail(f"console: the firmware passes {name}, which is not on the boot partition")
            return
        console = [a for a in cmdline if a.startswith("console=")]
        serial = t.alias(alias)
        if not console or console[-1] != f"console={tty},115200":
            self.fail(f"console: {name} has {console}; this board's serial console under the upstream device tree is {tty} ({alias}), and it must come last")
        elif serial is None or not t.enabled(serial):
            self.fail(f"console: {dtb} has no enabled {alias} ({tty})")
        else:
            self.note(f"console: {name}: console={tty},115200")
            self.need(serial, f"console {tty}", card.initmods, initramfs=True)

    def firmware_dtb(self):
        """The DTB the firmware loads: a device_tree= in a section for this board, else the
        upstream name it derives with upstream_kernel=1 (raspberrypi/linux#3237)."""
        card, b = self.card, self.b
        sections = APPLIES[self.key]
        chosen, chosen_in, upstream = None, None, False
        for section, key, value in card.config:
            if section in sections:
                if key == "device_tree":
                    chosen, chosen_in = value, section
                elif key == "upstream_kernel":
                    upstream = value == "1"
        dtb = chosen or b["dtb"]
        if not chosen and not upstream:
            self.fail("config.txt: neither upstream_kernel=1 nor device_tree= for this board")
            return None
        if dtb != b["dtb"]:
            self.fail(f"config.txt: device_tree={dtb}, but this board's upstream device tree is {b['dtb']}")
            return None
        if not os.path.exists(os.path.join(card.boot, dtb)):
            self.fail(f"{dtb} is not on the boot partition (kernel {card.kver} has none)")
            return None
        if "same_as" in b:
            with open(os.path.join(card.boot, dtb), "rb") as f1:
                other = os.path.join(card.boot, b["same_as"])
                if not os.path.exists(other) or open(other, "rb").read() != f1.read():
                    self.fail(f"{dtb} is not a copy of the upstream {b['same_as']}")
                    return None
        how = f"config.txt [{chosen_in}] device_tree=" if chosen else "upstream_kernel=1 name"
        self.note(f"firmware loads {dtb} ({how})")
        return dtb

    def need(self, node, what, mods, initramfs):
        """Every node this one depends on has a driver: depth-first over suppliers and parents."""
        t, seen, stack = self.tree, set(), [(node, "", None)]
        while stack:
            n, via, consumer = stack.pop()
            if n in seen or n == 0:
                continue
            seen.add(n)
            compat = t.strings(n, "compatible")
            label = f"{what}: {t.path(n)}{' (' + via + ')' if via else ''}"
            if not t.enabled(n):
                # A clock controller's inputs are optional: the clock framework keeps the
                # clocks fed by an absent provider as orphans and the controller probes (the
                # cprman lists the DSI blocks' PLLs, disabled on a headless board). Anything
                # else that is disabled is never probed and its consumer waits forever.
                if consumer is not None and via.startswith("clocks of") and t.cells(consumer, "#clock-cells"):
                    self.note(f"{label}: disabled; an optional input of a clock controller")
                    continue
                self.fail(f"{label}: status disabled, so it never probes")
            if compat:
                self.driver(n, compat, label, mods, initramfs)
            for prop, s in t.suppliers(n):
                stack.append((s, f"{prop} of {t.name(n)}", n))
            p = t.parent(n)
            if p:
                stack.append((p, f"parent of {t.name(n)}", n))

    def driver(self, node, compat, label, mods, initramfs):
        t, card = self.tree, self.card
        if any(c in NO_DRIVER for c in compat):
            self.note(f"{label}: {compat[0]} (no driver of its own)")
            return
        for bus, alias_of, bound_by_class, by_class in BUS_DEVICES:
            ids = [c for c in compat if re.fullmatch(bus + r"[0-9a-f]+,[0-9a-f]+", c)]
            if not ids:
                continue
            vendor, device = (int(x, 16) for x in ids[0][len(bus):].split(","))
            alias = alias_of(vendor, device)
            found = sorted({m for pattern, m in mods.aliases if pattern.startswith(alias)})
            if found:
                self.ok(f"{label}: {ids[0]} -> {', '.join(found)} (module, {where(mods, card)})")
            elif bound_by_class(t, node):
                self.note(f"{label}: {ids[0]} ({by_class})")
            else:
                self.fail(f"{label}: {ids[0]}: no module with alias {alias}* in the root file system")
            return
        specific = [c for c in compat if c not in GENERIC] or compat
        modalias = t.modalias(node)
        # Which modules of the kernel match (the root file system holds them all).
        rootmatch = card.rootmods.match(modalias, naming=specific)
        if rootmatch:
            if initramfs:
                have = [m for m in rootmatch if m in card.initmods.deps]
                if have:
                    deps = [d for d in card.initmods.closure(have[0])]
                    self.ok(f"{label}: {compat[0]} -> {have[0]} (module, initramfs{', needs ' + ', '.join(modname(d) for d in deps[1:]) if deps[1:] else ''})")
                else:
                    self.fail(f"{label}: {compat[0]}: its driver {', '.join(rootmatch)} is a module of the root file system, not in the initramfs")
            else:
                self.ok(f"{label}: {compat[0]} -> {', '.join(rootmatch)} (module, root file system)")
            return
        builtin = card.rootmods.match(modalias, builtin=True)
        if builtin:
            self.ok(f"{label}: {compat[0]} -> {', '.join(builtin)} (built in, modules.builtin.modinfo)")
            return
        for c in specific:
            if b"\0" + c.encode() + b"\0" in card.kernel_image:
                self.ok(f"{label}: {c} (built in: its compatible is in the kernel image)")
                return
        self.fail(f"{label}: {', '.join(compat)}: no driver (no module alias, not in the kernel image)")

    def wifi_firmware(self, board_compat):
        fw = os.path.join(self.card.root, "lib/firmware")
        board = board_compat.replace("/", "_")
        for base in self.b["wifi"]:
            found = {}
            for ext in ("bin", "txt", "clm_blob"):
                for name in (f"{base}.{board}.{ext}", f"{base}.{ext}"):
                    if resolve(fw, f"brcm/{name}"):
                        found[ext] = name
                        break
            if "bin" in found and "txt" in found:
                extra = "" if "clm_blob" in found else " (no .clm_blob: the driver's default channel table)"
                self.ok(f"wlan0 firmware ({base}): brcm/{found['bin']}, brcm/{found['txt']}{extra}")
            else:
                missing = [f"{base}.{e}" for e in ("bin", "txt") if e not in found]
                msg = f"wlan0 firmware ({base}): no {' or '.join(missing)} (also tried .{board}.) in /lib/firmware/brcm"
                if len(self.b["wifi"]) > 1:
                    # A board variant no Debian package has firmware for: reported, not hidden.
                    self.lines.append("WARN " + msg + "; boards with this radio revision get no wlan0")
                else:
                    self.fail(msg)


def resolve(top, rel, depth=0):
    """The firmware file, following symlinks inside the dumped tree."""
    p = os.path.join(top, rel)
    if os.path.islink(p) and depth < 8:
        target = os.readlink(p)
        if target.startswith("/"):
            target = os.path.relpath(target, "/lib/firmware") if target.startswith("/lib/") else os.path.relpath(target, "/usr/lib/firmware")
        else:
            target = os.path.normpath(os.path.join(os.path.dirname(rel), target))
        return resolve(top, target, depth + 1)
    return os.path.isfile(p)


def where(mods, card):
    return "initramfs" if mods is card.initmods else "root file system"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("card")
    ap.add_argument("--initrd", help="check this initramfs instead of the card's")
    ap.add_argument("--board", action="append", choices=sorted(BOARDS), help="default: all")
    ap.add_argument("--unsupported", action="append", default=[], choices=sorted(BOARDS),
                    help="a board this card is known not to boot: reported, not counted; it is "
                    "an error if it passes (then it belongs among the supported)")
    ap.add_argument("--without", action="append", default=[], metavar="MODULE",
                    help="check as if the initramfs lacked this module (to show the check fails)")
    args = ap.parse_args()
    for tool in ("sfdisk", "mcopy", "debugfs", "cpio"):
        if not shutil.which(tool):
            sys.exit(f"bootpath-check: needs {tool}")
    bad = []
    with tempfile.TemporaryDirectory(prefix="bootpath.") as tmp:
        card = Card(args.card, args.initrd, tmp)
        for m in args.without:
            if card.initmods.deps.pop(m, None) is None:
                sys.exit(f"bootpath-check: --without {m}: the initramfs has no such module")
        print(f"bootpath-check: {os.path.basename(args.card)}, kernel {card.kver}, initramfs "
              f"{args.initrd or 'initrd.img'} ({len(card.initmods.deps)} modules); built-in "
              f"drivers by {'modules.builtin.modinfo and ' if card.rootmods.builtin_aliases else ''}"
              f"compatible strings in the kernel image")
        for key in args.board or list(BOARDS):
            board = Board(card, key)
            board.check()
            print(f"== {key}: {board.b['model']}: {'FAIL (' + str(len(board.problems)) + ')' if board.problems else 'ok'}")
            for line in board.lines:
                print("   " + line)
            if key in args.unsupported:
                if not board.problems:
                    print(f"bootpath-check: {key} passes but was given as --unsupported")
                    bad.append(key)
                else:
                    print(f"   (known unsupported on this card: not counted)")
            elif board.problems:
                bad.append(key)
    if bad:
        print(f"bootpath-check: FAIL for {', '.join(bad)}")
        return 1
    print(f"bootpath-check: every supported board checked reaches its root file system, eth0, "
          f"wlan0 and the serial console{' (unsupported: ' + ', '.join(args.unsupported) + ')' if args.unsupported else ''}")
    return 0


if __name__ == "__main__":
    status = main()
    # libfdt's Python binding (1.6.1) can crash in the interpreter's finalisation ("none_dealloc"):
    # leave without it, with the check's own status.
    sys.stdout.flush()
    os._exit(status)
