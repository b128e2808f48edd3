"""
Simulated Wi-Fi in a lab (root, a kernel with C{mac80211_hwsim}): radios
moved into namespaces, real access points (hostapd) and real stations
(wpa_supplicant) on them.

C{modprobe mac80211_hwsim radios=N} makes N radios (phy0..) that hear each
other whatever namespace they are in: frames cross namespaces as over the
air. L{radio} moves a free one into a lab namespace (C{iw phy PHY set netns
name NS}); when the namespace is deleted the radio comes back to the initial
namespace, free for the next test. A test that uses radios says
C{Lab(self, needs=("mac80211_hwsim",))}: where the kernel lacks the module it
skips, and `./dev test` runs it under kernel-lab, whose Debian kernel has it.

Control sockets (hostapd's, wpa_supplicant's) live in a directory under
/run: sockets cannot be made on kernel-lab's shared working directory.
"""

import os
import re
import shutil
import time
from collections import namedtuple

from netlmm.lab import kernel
from netlmm.lab.netns import CommandFailed, readText as _read, run, skipUnlessTools, which

MODULE = "mac80211_hwsim"
#: Radios made when the module is loaded here (one per AP and station of a domain, spare).
DEFAULT_RADIOS = 4
#: Debian packages of the programs used here.
TOOLS = (("hostapd", "hostapd"), ("wpa_supplicant", "wpasupplicant"),
         ("wpa_cli", "wpasupplicant"), ("iw", "iw"))


class Radio(namedtuple("Radio", "phy ifname mac node")):
    """A simulated radio in lab namespace C{node}: its wiphy, interface and MAC."""

    __slots__ = ()


def skipUnlessWifiTools():
    """Raise SkipTest naming the first of hostapd, wpa_supplicant, iw not installed."""
    skipUnlessTools(*TOOLS)


def freeRadios():
    """The wiphys in this (the initial) network namespace, sorted by number."""
    out = run(which("iw") or "iw", "phy", check=False).stdout
    phys = re.findall(r"^Wiphy (phy\d+)$", out, re.M)
    return sorted(phys, key=lambda p: int(p[3:]))


def loadRadios(count, timeout=15.0):
    """
    Make sure C{count} radios are free here: load mac80211_hwsim when it is
    not loaded; otherwise wait for radios of deleted namespaces to come back.
    Raises L{CommandFailed} when there are not enough.
    """
    if not os.path.isdir(f"/sys/module/{MODULE}"):
        run("modprobe", MODULE, f"radios={max(count, DEFAULT_RADIOS)}")
    deadline = time.monotonic() + timeout * kernel.timeScale()
    while True:
        free = freeRadios()
        if len(free) >= count:
            return free
        if time.monotonic() > deadline:
            raise CommandFailed(f"{count} simulated radios needed, {len(free)} free "
                                f"({', '.join(free) or 'none'}); reload {MODULE} with "
                                "more radios")
        time.sleep(0.1)


def runDirectory(lab):
    """The lab's directory for control sockets (under /run; removed with the lab)."""
    path = getattr(lab, "_wifiRun", None)
    if path is None:
        path = f"/run/netlmm-lab/{lab.prefix}"
        os.makedirs(path, exist_ok=True)
        lab._wifiRun = path
        lab.atDestroy(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


def radio(lab, node, ifname="wlan0", mac=None):
    """
    Move a free radio into C{node}'s namespace and name its interface
    C{ifname} (with C{mac} when given); returns a L{Radio}.
    """
    phy = loadRadios(1)[0]
    before = set(_interfaces(lab, node))
    run(which("iw") or "iw", "phy", phy, "set", "netns", "name", lab.ns(node))
    added = [i for i in _interfaces(lab, node) if i not in before]
    if not added:
        raise CommandFailed(f"{phy} moved into {lab.ns(node)} without an interface")
    lab.exec(node, "ip", "link", "set", added[0], "down")
    lab.exec(node, "ip", "link", "set", added[0], "name", ifname)
    if mac:
        lab.exec(node, "ip", "link", "set", ifname, "address", mac)
    address = lab.exec(node, "cat", f"/sys/class/net/{ifname}/address").stdout.strip()
    return Radio(phy, ifname, address, node)


def _interfaces(lab, node):
    out = lab.exec(node, which("iw") or "iw", "dev", check=False).stdout
    return re.findall(r"^\s*Interface (\S+)$", out, re.M)


class AccessPoint:
    """
    A hostapd on C{radio} serving C{ssid} (open, 2.4 GHz channel
    C{channel}), its interface a port of bridge C{bridge} in the same
    namespace. 802.11v BSS transition management is on, so the AP can steer
    a station to another (L{steer}).
    """

    def __init__(self, lab, radio, ssid, channel=1, bridge="acc0", extra=()):
        skipUnlessWifiTools()
        self.lab = lab
        self.radio = radio
        self.ssid = ssid
        directory = runDirectory(lab)
        self.controlDirectory = os.path.join(directory, f"hostapd-{radio.node}")
        self.control = os.path.join(self.controlDirectory, radio.ifname)
        self.config = os.path.join(directory, f"hostapd-{radio.node}.conf")
        self.logPath = os.path.join(directory, f"hostapd-{radio.node}.log")
        lines = [f"interface={radio.ifname}", "driver=nl80211",
                 f"ctrl_interface={self.controlDirectory}", f"ssid={ssid}",
                 "hw_mode=g", f"channel={channel}", f"bridge={bridge}",
                 "bss_transition=1", "wmm_enabled=1", *extra]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.process = None

    @property
    def bssid(self):
        """The AP's BSSID (its radio's MAC)."""
        return self.radio.mac

    def start(self, timeout=20.0):
        """Start hostapd and wait until the AP is enabled."""
        self.process = self.lab.start(self.radio.node, [which("hostapd"), "-t", "-f",
                                                        self.logPath, self.config])
        _wait(lambda: "AP-ENABLED" in self.log(), f"hostapd on {self.radio.node}",
              timeout, self.process, self.log)
        return self

    def stop(self):
        """Stop hostapd (the lab stops it anyway)."""
        if self.process is not None:
            self.lab.stop(self.process)
            self.process = None

    def log(self):
        """What hostapd has logged."""
        return _read(self.logPath)

    def cli(self, *args):
        """`hostapd_cli` on this AP; its output."""
        return self.lab.exec(self.radio.node, which("hostapd_cli") or "hostapd_cli", "-p",
                             self.controlDirectory, "-i", self.radio.ifname,
                             *args).stdout

    def steer(self, station, target):
        """
        Ask C{station} (MAC) to move to the AP C{target} (an L{AccessPoint}):
        802.11v. The candidate list stays valid for 255 beacon intervals
        (26 s), the longest the field allows: hostapd's default is one
        (102 ms), and a station whose scan results are older than a few
        seconds scans first; under kernel-lab that scan outlasted the list
        and wpa_supplicant stayed where it was.
        """
        return self.cli("bss_tm_req", station, "pref=1", "abridged=1", "valid_int=255",
                        f"neighbor={target.bssid},0x0000,81,{target.channel},7")

    @property
    def channel(self):
        return int(re.search(r"^channel=(\d+)$", _read(self.config), re.M).group(1))


class Station:
    """A stock wpa_supplicant on C{radio}, for the open network C{ssid}."""

    def __init__(self, lab, radio, ssid):
        skipUnlessWifiTools()
        self.lab = lab
        self.radio = radio
        directory = runDirectory(lab)
        self.controlDirectory = os.path.join(directory, f"wpa-{radio.node}")
        self.config = os.path.join(directory, f"wpa-{radio.node}.conf")
        self.logPath = os.path.join(directory, f"wpa-{radio.node}.log")
        with open(self.config, "w") as f:
            f.write(f"ctrl_interface={self.controlDirectory}\n"
                    "network={\n"
                    f'  ssid="{ssid}"\n'
                    "  key_mgmt=NONE\n"
                    '  bgscan=""\n'
                    "}\n")
        self.process = None
        self.preferred = None

    def start(self, bssid=None):
        """
        Start wpa_supplicant; it associates with the AP C{bssid} when given
        (a preference cleared once associated, so it may roam), else with
        whichever it finds.
        """
        if bssid is not None:
            text = _read(self.config)
            with open(self.config, "w") as f:
                f.write(text.replace("  key_mgmt=NONE\n", f"  key_mgmt=NONE\n  bssid={bssid}\n"))
            self.preferred = bssid
        self.lab.exec(self.radio.node, "ip", "link", "set", self.radio.ifname, "up")
        self.process = self.lab.start(self.radio.node, [
            which("wpa_supplicant"), "-t", "-i", self.radio.ifname, "-c", self.config,
            "-f", self.logPath])
        return self

    def cli(self, *args):
        """`wpa_cli` on this station; its output."""
        return self.lab.exec(self.radio.node, which("wpa_cli"), "-p", self.controlDirectory,
                             "-i", self.radio.ifname, *args, check=False).stdout

    def status(self):
        """`wpa_cli status` as a dict."""
        out = {}
        for line in self.cli("status").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                out[key] = value
        return out

    def associated(self):
        """The BSSID the station is associated with, or None."""
        status = self.status()
        return status.get("bssid") if status.get("wpa_state") == "COMPLETED" else None

    def waitAssociated(self, bssid=None, timeout=20.0):
        """Wait until associated (with C{bssid}, if given); returns the BSSID."""
        _wait(lambda: self.associated() is not None
              and (bssid is None or self.associated() == bssid),
              f"the station to associate{' with ' + bssid if bssid else ''}", timeout,
              self.process, self.log)
        if self.preferred is not None:
            # The first AP was a preference of the start; now it may roam anywhere.
            self.cli("bssid", "0", "00:00:00:00:00:00")
            self.preferred = None
        return self.associated()

    def roam(self, bssid):
        """Reassociate with the AP C{bssid} (`wpa_cli roam`), not waiting for it."""
        out = self.cli("roam", bssid)
        if "OK" not in out:
            raise CommandFailed(f"wpa_cli roam {bssid}: {out.strip()}")

    def log(self):
        """What wpa_supplicant has logged."""
        return _read(self.logPath)


def _wait(predicate, what, timeout, process, log):
    deadline = time.monotonic() + timeout * kernel.timeScale()
    while not predicate():
        if process is not None and process.poll() is not None:
            raise CommandFailed(f"{what}: the process exited\n{log()[-2000:]}")
        if time.monotonic() > deadline:
            raise CommandFailed(f"timed out after {timeout} s waiting for {what}\n"
                                f"{log()[-2000:]}")
        time.sleep(0.1)


