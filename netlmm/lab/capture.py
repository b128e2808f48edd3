"""
Packet captures in a lab namespace (tcpdump) decoded with tshark, the
independent reference the tests check the wire against.
"""

import os
import shutil
import signal
import subprocess
import time
from unittest import SkipTest

from netlmm.lab import kernel

#: tshark display filter: ICMPv6 echo requests and replies.
ECHO = "icmpv6.type == 128 or icmpv6.type == 129"
#: tshark display filter: Mobility Header messages, not those quoted in ICMPv6
#: errors, and not RFC 5847 Heartbeats (type 13: the daemons send them on
#: their own schedule; L{HEARTBEATS} selects them).
MOBILITY = "mipv6 and not icmpv6 and mip6.mhtype != 13"
#: tshark display filter: RFC 5847 Heartbeats.
HEARTBEATS = "mipv6 and not icmpv6 and mip6.mhtype == 13"


def skipUnlessCapture():
    """Raise SkipTest unless tcpdump and tshark are installed."""
    for tool, package in (("tcpdump", "tcpdump"), ("tshark", "tshark")):
        if shutil.which(tool) is None:
            raise SkipTest(f"needs {tool} to check packets on the wire "
                           f"(apt-get install {package})")


#: tshark's expert severities (the values of _ws.expert.severity)
SEVERITIES = {0x00100000: "comment", 0x00200000: "chat", 0x00400000: "note",
              0x00600000: "warning", 0x00800000: "error"}


def tshark(path, displayFilter, *fields, timeout=60, aggregator=","):
    """
    Decode the capture file C{path}: for each packet matching C{displayFilter},
    a tuple of the C{fields} (tshark field names; '' where absent, several
    occurrences joined by C{aggregator}).
    """
    argv = ["tshark", "-r", path, "-Y", displayFilter, "-T", "fields",
            "-E", f"aggregator={aggregator}"]
    for field in fields:
        argv += ["-e", field]
    out = subprocess.run(argv, capture_output=True, text=True,
                         timeout=timeout * kernel.timeScale())
    if out.returncode:
        raise RuntimeError(f"tshark -r {path} -Y {displayFilter!r} failed: "
                           f"{out.stderr.strip()}")
    rows = []
    for line in out.stdout.splitlines():
        if line.strip():
            values = line.split("\t")
            rows.append(tuple(values + [""] * (len(fields) - len(values))))
    return rows


def expert(path, displayFilter, least="warning"):
    """
    tshark's expert items of severity C{least} or worse on the packets of
    the capture file C{path} matching C{displayFilter}: (frame number,
    severity, message) each. The check that what netlmm sends decodes
    cleanly in an independent decoder.
    """
    floor = {name: value for value, name in SEVERITIES.items()}[least]
    found = []
    separator = "\x1e"   # expert messages may contain commas
    for frame, messages, severities in tshark(path, displayFilter, "frame.number",
                                              "_ws.expert.message", "_ws.expert.severity",
                                              aggregator=separator):
        for message, severity in zip(messages.split(separator), severities.split(separator)):
            if severity and int(severity) >= floor:
                found.append((int(frame), SEVERITIES.get(int(severity), severity), message))
    return found


class Capture:
    """
    tcpdump on one interface of a lab namespace, writing a pcap file; made
    by L{netlmm.lab.Lab.capture}, stopped with L{stop} (or with the lab).
    """

    def __init__(self, lab, node, interface, path, filter="ip6"):
        skipUnlessCapture()
        self.lab = lab
        self.node = node
        self.interface = interface
        self.path = os.path.abspath(path)
        self.filter = filter
        self.process = None

    def start(self):
        """Start tcpdump and wait until it captures; returns self."""
        argv = ["tcpdump", "-i", self.interface, "-nn", "-U", "-w", self.path]
        if self.filter:
            argv.append(self.filter)
        self.process = self.lab.start(self.node, argv, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
        line = self.process.stderr.readline()  # "listening on ..." once it captures
        if b"listening" not in line:
            raise RuntimeError(f"tcpdump on {self.node}/{self.interface} did not start: "
                               f"{line!r}")
        return self

    def stop(self, expect=0, displayFilter=None, wait=15.0):
        """
        Stop capturing once C{expect} packets matching C{displayFilter} (all
        packets if None) are in the file, or after C{wait} seconds: tcpdump
        may lag behind on a slow machine.
        """
        deadline = time.monotonic() + wait * kernel.timeScale()
        time.sleep(0.2)
        while (expect and len(self.fields(displayFilter or "frame", "frame.number")) < expect
               and time.monotonic() < deadline):
            time.sleep(0.3)
        if self.process is not None:
            self.lab.stop(self.process, sig=signal.SIGINT, timeout=10)
            self.process = None
        return self

    def fields(self, displayFilter, *fields):
        """L{tshark} on this capture."""
        return tshark(self.path, displayFilter, *fields)

    def expert(self, displayFilter, least="warning"):
        """L{expert} on this capture."""
        return expert(self.path, displayFilter, least)
