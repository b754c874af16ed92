#!/usr/bin/env python3
"""Reads the emulated Raspberry Pi's GPIO pin levels from the host, through QEMU's QMP socket.

The level register (GPLEV0, BCM GPIO 0-31) is read from the machine model itself with the
monitor's `xp` (a physical memory read, as the CPU would do it), so what the test sees is the
level the guest's driver put on the pin, with nothing in the guest involved.

    test-gpio.py level SOCK BASE PIN            prints 0 or 1
    test-gpio.py record SOCK BASE SECONDS OUT   samples GPLEV0 every ~20 ms for SECONDS
                                                (bounded), one "t value" line per sample
    test-gpio.py pulses OUT PIN                 from a recording: the pin's first and last
                                                level and its high intervals (start, length,
                                                in seconds from the start of the recording)

BASE is the GPIO block's physical address: 0x3f200000 on raspi3b, 0xfe200000 on raspi4b.
"""

import json
import socket
import sys
import time

GPLEV0 = 0x34


class Qmp:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buf = b""
        self.recv()  # greeting
        self.call("qmp_capabilities")

    def recv(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("QMP socket closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, command, **arguments):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self.recv()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error']}")
            # an asynchronous event: skip it

    def read32(self, address):
        out = self.call("human-monitor-command", **{"command-line": f"xp /1wx {address:#x}"})
        # "000000003f200034: 0x00020000"
        return int(out.split(":")[1].split()[0], 16)


def level(sock, base, pin):
    return (Qmp(sock).read32(base + GPLEV0) >> pin) & 1


def record(sock, base, seconds, out):
    q = Qmp(sock)
    start = time.monotonic()
    end = start + min(seconds, 120.0)
    with open(out, "w") as f:
        while time.monotonic() < end:
            value = q.read32(base + GPLEV0)
            f.write(f"{time.monotonic() - start:.3f} {value}\n")
            f.flush()
            time.sleep(0.02)


def pulses(out, pin):
    samples = []
    with open(out) as f:
        for line in f:
            t, v = line.split()
            samples.append((float(t), (int(v) >> pin) & 1))
    if not samples:
        raise SystemExit("no samples")
    intervals = []
    start = None
    for t, bit in samples:
        if bit and start is None:
            start = t
        elif not bit and start is not None:
            intervals.append((start, t - start))
            start = None
    if start is not None:
        intervals.append((start, samples[-1][0] - start))
    print(f"first {samples[0][1]} last {samples[-1][1]} samples {len(samples)}")
    for s, length in intervals:
        print(f"high {s:.2f} {length:.2f}")


def main(argv):
    if len(argv) >= 5 and argv[1] == "level":
        print(level(argv[2], int(argv[3], 0), int(argv[4])))
    elif len(argv) >= 6 and argv[1] == "record":
        record(argv[2], int(argv[3], 0), float(argv[4]), argv[5])
    elif len(argv) >= 4 and argv[1] == "pulses":
        pulses(argv[2], int(argv[3]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
