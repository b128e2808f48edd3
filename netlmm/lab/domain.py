"""
A local mobility domain in network namespaces, with the real daemons, for
end-to-end tests, `netlmm demo --netns` and the benchmarks (root only).

    CN --- LMA --- MAG1 ==acc0== (MN)
            | \\--- MAG2 ==acc0==
           PMIP

Every node is a namespace of a L{netlmm.lab.Lab}; the MN runs the stock
Linux IPv6 stack (accept_ra, SLAAC with EUI-64 addresses, DAD on) and is
attached to a MAG by a veth pair whose MAG end is a port of that MAG's access
bridge ``acc0``. A handoff deletes that veth and creates a new one, with the
same MAC, into the other MAG's bridge.

With C{wifi=True} (a kernel with mac80211_hwsim) each MAG is a Wi-Fi access
point instead: hostapd on a simulated radio whose interface is a port of
``acc0``, the same SSID on both, and the MAGs follow it with the 'hostapd'
detector. The MN is a station running wpa_supplicant; a handoff is a roam
(C{wpa_cli roam}): its interface stays up, as a real Wi-Fi mobile's does.
"""

import os
import re
import signal
import time

from netlmm.lab import kernel
from netlmm.lab.netns import CommandFailed, Lab, Mobile, readText as _read
from netlmm.lab.wait import waitFor

HOME_PREFIX = "2001:db8:1::/64"
LMA_ADDRESS = "2001:db8:ffff::1"
PMIP_ADDRESS = "2001:db8:b::2"
CN_ADDRESS = "2001:db8:c::2"
#: The correspondent's IPv4 address; the LMA (198.51.100.1) is the IPv4 gateway.
CN_IPV4 = "198.51.100.2"
MAG_ADDRESSES = ("2001:db8:ffff::11", "2001:db8:ffff::12")
MN_MAC = "02:00:00:00:aa:01"
TRANSPORT_MTU = 1600

#: The data planes in order of preference, with what each needs (ip6tnl
#: last: the domain picks it only when asked, as the handover tests do).
DATAPLANES = (("seg6", "seg6"), ("userspace", "tun"), ("ip6tnl", "ip6tnl"))


def dataPlaneMissing(name):
    """None when this kernel can run data plane C{name}, else what it lacks."""
    needs = dict(DATAPLANES).get(name)
    if needs is None:
        return f"unknown data plane {name!r} (known: {', '.join(n for n, _ in DATAPLANES)})"
    return kernel.missing(needs)


def bestDataPlane():
    """
    The first data plane of L{DATAPLANES} this kernel can run; raises
    L{CommandFailed} saying what each lacks when there is none.
    """
    reasons = []
    for name, _ in DATAPLANES:
        reason = dataPlaneMissing(name)
        if reason is None:
            return name
        reasons.append(f"{name}: this kernel has {reason}")
    raise CommandFailed("no data plane can run on this kernel (" + "; ".join(reasons) + ")")


def pickDataPlane(name=None):
    """
    C{(name, the kernel capability it needs)}: C{name}, or when None the
    best data plane this kernel has (the first of L{DATAPLANES} when none
    can run or, without root, nothing can be probed: a test needing it then
    skips with the reason).
    """
    if name is None:
        name = DATAPLANES[0][0]
        if kernel.needsRoot() is None:
            try:
                name = bestDataPlane()
            except CommandFailed:
                pass
    if name not in dict(DATAPLANES):
        raise CommandFailed(dataPlaneMissing(name))
    return name, dict(DATAPLANES)[name]


SSID = "netlmm"


class WifiMobile:
    """
    The domain's mobile as a Wi-Fi station: the same interface for the
    domain's steps as L{Mobile}, over wpa_supplicant on a simulated radio.
    """

    def __init__(self, topology, node, mac):
        self.lab = topology
        self.topology = topology
        self.node = node
        self.mac = mac
        self.ifname = "wlan0"
        self.station = None
        #: the MAG node whose AP the station is associated with, or None
        self.at = None

    def attach(self, mag):
        """Associate with C{mag}'s access point (start wpa_supplicant, or roam)."""
        from netlmm.lab.wifi import Station
        ap = self.topology.aps[mag]
        if self.station is None:
            self.station = Station(self.lab, self.topology.radios[self.node], SSID)
            self.station.start(ap.bssid)
        elif self.station.associated() != ap.bssid:
            if self.station.associated() is None:
                self.station.cli("reconnect")
                self.station.waitAssociated()
            if self.station.associated() != ap.bssid:
                self.station.roam(ap.bssid)
        self.station.waitAssociated(ap.bssid)
        self.at = (mag, ap.bssid)

    def roam(self, mag):
        """Start a roam to C{mag}'s access point; returns at once."""
        self.station.roam(self.topology.aps[mag].bssid)
        self.at = (mag, self.topology.aps[mag].bssid)

    def detach(self):
        """Leave the AP (`wpa_cli disconnect`: a deauthentication it hears)."""
        if self.station is not None and self.at is not None:
            self.station.cli("disconnect")
        self.at = None

    def addresses(self, usable=True):
        """The global IPv6 addresses (see L{Lab.addresses})."""
        return self.lab.addresses(self.node, self.ifname, usable=usable)

    def address(self):
        """The first usable global address, or None."""
        found = self.addresses()
        return found[0] if found else None


class Topology(Lab):
    """The namespaces, links and addresses of the domain, and the mobile's moves."""

    def __init__(self, prefix=None, testCase=None, needs=(), wifi=False, mobileSysctls=()):
        if wifi:
            needs = tuple(needs) + ("mac80211_hwsim",)
        super().__init__(testCase, prefix, needs)
        self.wifi = wifi
        #: More sysctls for the mobile (e.g. optimistic DAD).
        self.mobileSysctls = tuple(mobileSysctls)
        #: node -> L{netlmm.lab.wifi.Radio}, and MAG node -> its AccessPoint (Wi-Fi)
        self.radios = {}
        self.aps = {}
        #: the mobile, attached to a MAG's acc0 with L{Mobile.attach}
        self.mn = WifiMobile(self, "mn", MN_MAC) if wifi else Mobile(self, "mn", MN_MAC)

    def _build(self):
        for node in ("cn", "lma", "pmip", "mag1", "mag2"):
            self.add(node, router=node != "cn")
        mtu = TRANSPORT_MTU
        self.link("cn", "eth0", "lma", "cn0", mtu)
        self.addr("cn", "eth0", f"{CN_ADDRESS}/64")
        self.addr("lma", "cn0", "2001:db8:c::1/64")
        self.exec("cn", "ip", "-6", "route", "add", "default", "via", "2001:db8:c::1")
        # IPv4 between CN and LMA, for IPv4 mobiles (RFC 5844).
        self.exec("cn", "ip", "addr", "add", f"{CN_IPV4}/24", "dev", "eth0")
        self.exec("lma", "ip", "addr", "add", "198.51.100.1/24", "dev", "cn0")
        self.exec("cn", "ip", "route", "add", "default", "via", "198.51.100.1")
        for node in ("lma", "mag1", "mag2"):
            self.sysctl(node, "net.ipv4.ip_forward=1")
        self.link("pmip", "eth0", "lma", "pm0", mtu)
        self.addr("pmip", "eth0", f"{PMIP_ADDRESS}/64")
        self.addr("lma", "pm0", "2001:db8:b::1/64")
        self.exec("pmip", "ip", "-6", "route", "add", "default", "via", "2001:db8:b::1")
        self.addr("lma", "lo", f"{LMA_ADDRESS}/128")
        # MAGs <-> LMA; each MAG has a /128 loopback address (its pCoA)
        for i, mag in enumerate(("mag1", "mag2")):
            net = f"2001:db8:a{i + 1}::"
            self.link(mag, "core0", "lma", f"m{i + 1}", mtu)
            self.addr(mag, "core0", f"{net}2/64")
            self.addr("lma", f"m{i + 1}", f"{net}1/64")
            self.addr(mag, "lo", f"{MAG_ADDRESSES[i]}/128")
            self.exec(mag, "ip", "-6", "route", "add", "default", "via", f"{net}1")
            self.exec("lma", "ip", "-6", "route", "add", f"{MAG_ADDRESSES[i]}/128",
                      "via", f"{net}2")
            # The access link: a bridge that mobiles' veths join.
            self.bridge(mag, "acc0", f"02:00:00:00:0{i + 1}:01")
        self.mobile("mn", *self.mobileSysctls)
        if self.wifi:
            from netlmm.lab.wifi import AccessPoint, radio, skipUnlessWifiTools
            skipUnlessWifiTools()
            for mag in ("mag1", "mag2"):
                self.radios[mag] = radio(self, mag)
                self.aps[mag] = AccessPoint(self, self.radios[mag], SSID)
            self.radios["mn"] = radio(self, "mn", mac=MN_MAC)

    def startAccessPoints(self):
        """Start hostapd on each MAG's radio (Wi-Fi domains)."""
        for ap in self.aps.values():
            ap.start()


_LMA_TOML = """[lma]
listen = "[{lma}]:5436"
home_prefix = "{prefix}"
max_lifetime = 3600
allowed_clients = ["{pmip}"]
[lma.dataplane]
{lmaPlane}
{lmaExtra}"""

_PMIP_TOML = """[pmip]
listen = "[{pmip}]:5437"
lma = "[{lma}]:5436"
mh_bind = "[{pmip}]:0"
lifetime = 3600
allowed_mags = ["2001:db8:a1::/64", "2001:db8:a2::/64", "2001:db8:ffff::/64"]
detach_delay = {detachDelay}
[pmip.tls]
transport = "tcp"
"""

_MAG_TOML = """[mag]
name = "{name}"
address = "{address}"
lma_address = "{lma}"
pmip = "[{pmip}]:5437"
[mag.access]
interface = "acc0"
{sharedPrefix}ra_interval_max = 10
{accessExtra}[mag.attachment]
{attachment}
[mag.assignment]
{assignment}
[mag.dataplane]
{magPlane}
[mag.tls]
transport = "tcp"
{handover}{magExtra}"""

#: The domain's one router identity, when the MAGs share it (same MAC and
#: link-local address on every access link).
ROUTER_MAC = "02:00:5e:10:00:01"
ROUTER_ADDRESS = "fe80::1"


def dataPlaneConfig(kind, role, address, core):
    """The body of a daemon's [ROLE.dataplane] table (TOML lines) in the domain."""
    lines = [f'kind = "{kind}"', f'address = "{address}"']
    if kind in ("seg6", "ip6tnl"):
        lines.append(f'interface = "{core}"')
    if role == "mag":
        lines.append('access_interface = "acc0"')
    return "\n".join(lines)


class NetnsDomain:
    """
    L{Topology} plus the real daemons (`twistd -n netlmm-...`) in it, with
    generated configs: SLAAC mobiles detected by their Router Solicitations,
    and a data plane: C{"seg6"}, C{"userspace"}, or None for the best this
    kernel has (L{bestDataPlane}). With a C{testCase}, the test skips where
    the kernel lacks what the data plane needs (and `./dev test` runs it
    under kernel-lab), and everything is removed at its cleanup.
    """

    def __init__(self, workdir, dataplane=None, prefix=None, detachDelay=5.0,
                 assignment='strategy = "slaac"', accessExtra="", lmaExtra="",
                 testCase=None, wifi=False, handover=False, sharedRouter=None,
                 handoverExtra="", mobileSysctls=(), sharedPrefix=True, magExtra="",
                 neighbours=True):
        # assignment: the [mag.assignment] table's body (TOML lines);
        # accessExtra: more [mag.access] lines (each ending in a newline);
        # lmaExtra: more LMA config (whole tables, e.g. [lma.pool]);
        # sharedPrefix: the MAGs advertise HOME_PREFIX to all (False: per-MN
        # prefixes, no prefix in [mag.access]); magExtra: more MAG tables.
        self.lmaExtra = lmaExtra
        self.sharedPrefix = sharedPrefix
        self.magExtra = magExtra
        self.assignment = assignment
        self.accessExtra = accessExtra
        self.workdir = os.path.abspath(str(workdir))
        # A handoff must reach the new MAG within the PMIP client's detach
        # delay; under kernel-lab's slow emulated CPU that takes longer.
        self.detachDelay = detachDelay * kernel.timeScale()
        self.dataplane, needs = pickDataPlane(dataplane)
        self.wifi = wifi
        #: Context transfer and forwarding between the MAGs (Appendix D).
        self.handover = handover
        self.handoverExtra = handoverExtra
        #: False: no [mag.handover] neighbors; the MAGs learn each other
        #: from the PMIP client's Notifications.
        self.neighbours = neighbours
        #: One router identity on every access link (by default with handover).
        self.sharedRouter = handover if sharedRouter is None else sharedRouter
        self.topology = Topology(prefix, testCase, needs=(needs,), wifi=wifi,
                                 mobileSysctls=mobileSysctls)
        self.daemons = []

    def path(self, name):
        """A file in the work directory."""
        return os.path.join(self.workdir, name)

    def log(self, role):
        """What a daemon (or any process logging to C{role}.log here) has logged so far."""
        return _read(self.path(f"{role}.log"))

    def waitFor(self, predicate, what, timeout=20.0):
        """
        Poll C{predicate} until true; raise L{CommandFailed} with the logs
        after C{timeout} s (stretched under kernel-lab) or when a daemon exits.
        """
        waitFor(predicate, what, timeout,
                alive=lambda: all(p.poll() is None for p in self.daemons),
                details=self.logs)

    def logs(self):
        """All daemon logs, for failure messages."""
        return "\n".join(f"--- {role}.log\n{self.log(role)[-4000:]}"
                         for role in ("lma", "pmip", "mag1", "mag2"))

    def start(self):
        """Build the namespaces and start the LMA, PMIP client and both MAGs."""
        os.makedirs(self.workdir, exist_ok=True)
        common = dict(lma=LMA_ADDRESS, pmip=PMIP_ADDRESS, prefix=HOME_PREFIX,
                      detachDelay=self.detachDelay)
        files = {
            "lma.toml": _LMA_TOML.format(lmaPlane=dataPlaneConfig(self.dataplane, "lma",
                                                          LMA_ADDRESS, "m1"),
                                         lmaExtra=self.lmaExtra, **common),
            "pmip.toml": _PMIP_TOML.format(**common),
        }
        self.topology.build()
        try:
            t = self.topology
            accessExtra = self.accessExtra
            if self.sharedRouter:
                accessExtra += (f'router_mac = "{ROUTER_MAC}"\n'
                                f'router_address = "{ROUTER_ADDRESS}"\n')
            if self.handover:
                self.writeHandoverKeys()
            for i in (1, 2):
                files[f"mag{i}.toml"] = _MAG_TOML.format(
                    name=f"MAG{i}", address=MAG_ADDRESSES[i - 1],
                    magPlane=dataPlaneConfig(self.dataplane, "mag", MAG_ADDRESSES[i - 1],
                                             "core0"),
                    attachment=self.attachmentConfig(f"mag{i}"),
                    handover=self.handoverConfig(f"mag{i}"),
                    assignment=self.assignment, accessExtra=accessExtra,
                    sharedPrefix=f'prefix = "{HOME_PREFIX}"\n' if self.sharedPrefix else "",
                    magExtra=self.magExtra, **common)
            for name, text in files.items():
                with open(self.path(name), "w") as f:
                    f.write(text)
            t.startAccessPoints()
            self.daemons.append(t.twistd("lma", "lma", self.path("lma.toml"),
                                         self.path("lma.log")))
            self.waitFor(lambda: "LMA listening" in self.log("lma"), "the LMA")
            self.daemons.append(t.twistd("pmip", "pmip", self.path("pmip.toml"),
                                         self.path("pmip.log")))
            self.waitFor(lambda: "MAGs connect to" in self.log("pmip"), "the PMIP client")
            for i in (1, 2):
                self.daemons.append(t.twistd(f"mag{i}", "mag", self.path(f"mag{i}.toml"),
                                             self.path(f"mag{i}.log")))
            for i in (1, 2):
                self.waitFor(lambda i=i: "connected to PMIP client" in self.log(f"mag{i}"),
                             f"MAG{i}")
        except BaseException:
            self.stop()
            raise
        return self

    def writeHandoverKeys(self):
        """The key the MAGs share for their RFC 5949 messages (mode 0600)."""
        from netlmm.security.auth import SecurityAssociation
        from netlmm.security.keystore import generateKey
        from netlmm.service.handover import writeHandoverKeys
        writeHandoverKeys(self.path("handover-keys.toml"), [SecurityAssociation(
            400, generateKey(), "hmac-sha256-128",
            clients=[f"{a}/128" for a in MAG_ADDRESSES])])

    def handoverConfig(self, mag):
        """C{mag}'s [mag.handover] table (empty without handover)."""
        if not self.handover:
            return ""
        i = int(mag[-1]) - 1
        other = MAG_ADDRESSES[1 - i]
        lines = ["[mag.handover]", f'neighbors = ["{other}"]' if self.neighbours else "",
                 f'keys = "{self.path("handover-keys.toml")}"',
                 f"context_timeout = {0.5 * kernel.timeScale():g}",
                 f"prepare_timeout = {3 * kernel.timeScale():g}",
                 f"buffer_time = {3 * kernel.timeScale():g}",
                 # room for 3 s of a 1,000 packets/s stream (handoffFlow)
                 "buffer_packets = 4096",
                 f"replay_window = {7 * kernel.timeScale():g}", self.handoverExtra]
        if self.wifi:
            otherAp = self.topology.aps[f"mag{2 - i}"]
            lines += ["[mag.handover.access_points]", f'"{otherAp.bssid}" = "{other}"']
        return "\n".join(lines) + "\n"

    def attachmentConfig(self, mag):
        """The body of C{mag}'s [mag.attachment] table."""
        if self.wifi:
            return f'detector = "hostapd"\ncontrol = "{self.topology.aps[mag].control}"'
        return 'detector = "rs"\nidle_timeout = 0'

    def stop(self):
        """Stop the daemons and remove the namespaces."""
        self.topology.destroy()

    # ------------------------------------------------------------ scenario steps

    def ping(self, node, target, count=3, interval=0.2):
        """`ping` from C{node}; the completed process."""
        return self.topology.exec(node, "ping", "-c", str(count), "-i", str(interval),
                                  "-W", "2", str(target), check=False)

    def attach(self, mag, timeout=20.0, onLink=None):
        """
        Bring the MN's link up at C{mag} and wait until it has its SLAAC
        address and the LMA binds it there; returns the address. C{onLink()}
        runs as soon as the link is up (the wired lab makes a new interface:
        e.g. to give back a configuration a Wi-Fi station would keep).
        """
        pcoa = MAG_ADDRESSES[int(mag[-1]) - 1]
        before = self._bindingsVia(pcoa)
        self.topology.mn.attach(mag)
        if onLink is not None:
            onLink()
        self.waitFor(lambda: self.topology.mn.address() is not None,
                     "the MN's SLAAC address", timeout)
        self.waitFor(lambda: self._bindingsVia(pcoa) > before,
                     f"the LMA's binding via {mag}", timeout)
        return self.topology.mn.address()

    def roam(self, mag, timeout=20.0, steer=False):
        """
        Wi-Fi: roam the station to C{mag}'s access point (C{steer}: the
        current AP asks it to, with an 802.11v BSS transition request, which
        tells the current MAG where it goes) and wait until the LMA binds it
        there; returns the address, which must not change.
        """
        pcoa = MAG_ADDRESSES[int(mag[-1]) - 1]
        before = self._bindingsVia(pcoa)
        mn = self.topology.mn
        if steer:
            current = self.topology.aps[mn.at[0]]
            current.steer(mn.mac, self.topology.aps[mag])
            mn.at = (mag, self.topology.aps[mag].bssid)
        else:
            mn.roam(mag)
        mn.station.waitAssociated(self.topology.aps[mag].bssid, timeout)
        self.waitFor(lambda: self._bindingsVia(pcoa) > before,
                     f"the LMA's binding via {mag}", timeout)
        return mn.address()

    def _bindingsVia(self, pcoa):
        log = self.log("lma")
        return len(re.findall(rf"(new binding \S+|moves \S+) -> {re.escape(pcoa)}\b", log))

    def handoff(self, mag, flowInterval=0.01, timeout=20.0, pingFrom="cn", steer=False):
        """
        Move the MN to C{mag} (link down at the old MAG, up at the new one,
        same MAC; on Wi-Fi a roam) while the CN pings the MN's address (or,
        with C{pingFrom="mn"}, the MN the CN) every C{flowInterval} seconds;
        returns dict(interruption=seconds, lost=packets, sent=packets).
        """
        phoa = self.topology.mn.address()
        flowLog = self.path(f"flow-{time.time():.0f}-{mag}.log")
        source, target = ("mn", CN_ADDRESS) if pingFrom == "mn" else ("cn", phoa)
        flow = self.topology.start(source, ["ping", "-D", "-i", str(flowInterval), "-W", "1",
                                            str(target)], flowLog)
        self.waitFor(lambda: len(parsePing(_read(flowLog))[2]) >= 20,
                     "the flow before the handoff", 10)
        started = time.time()
        self.move(mag, timeout, steer)
        moved = time.time()
        self.waitFor(lambda: any(s > moved for s in parsePing(_read(flowLog))[2]),
                     f"the flow to resume through {mag}", timeout)
        time.sleep(0.5)
        self.topology.stop(flow, sig=signal.SIGINT, timeout=10)
        sent, got, stamps = parsePing(_read(flowLog))
        gaps = [b - a for a, b in zip(stamps, stamps[1:]) if b > started]
        return dict(interruption=max(gaps), lost=sent - got, sent=sent)

    def move(self, mag, timeout=20.0, steer=False, onLink=None):
        """
        Move the MN to C{mag}: a roam (or a steered one) on Wi-Fi, else a new
        link (C{onLink()} runs as soon as it is up; see L{attach}).
        """
        if self.wifi:
            self.roam(mag, timeout, steer)
        else:
            self.topology.mn.detach()
            self.attach(mag, timeout, onLink)

    def handoffFlow(self, mag, rate=1000.0, steer=False, timeout=20.0, settle=1.0,
                    onMove=None, target=None, onLink=None):
        """
        Move the MN to C{mag} while the CN sends it a UDP stream of C{rate}
        packets/s (L{netlmm.lab.flow}; to C{target}, by default its pHoA; an
        IPv4 address as '::ffff:a.b.c.d') and the MN pings the CN every 10 ms.
        C{onLink}: see L{move}.
        Returns L{netlmm.lab.flow.analyse}'s dict for the stream (interruption
        in seconds, lost, duplicated, reordered) plus pingSent, pingLost and
        pingInterruption.
        """
        import sys
        from netlmm.lab.flow import analyse, records
        t = self.topology
        phoa = t.mn.address()
        tag = f"{time.time():.3f}-{mag}"
        recordFile, countFile = self.path(f"udp-{tag}.rec"), self.path(f"udp-{tag}.count")
        pingLog = self.path(f"ping-{tag}.log")
        python = [sys.executable, "-m", "netlmm.lab.flow"]
        receiver = t.start("mn", python + ["receive", "5555", recordFile])
        # The receiver makes its record file once its socket is bound: on a
        # loaded machine its start took over a second (what came before was
        # counted as lost in the handover).
        self.waitFor(lambda: os.path.exists(recordFile), "the stream's receiver", 20)
        sender = t.start("cn", python + ["send", str(target or phoa), "5555", str(rate),
                                         countFile])
        ping = t.start("mn", ["ping", "-D", "-i", "0.01", "-W", "1", CN_ADDRESS], pingLog)
        self.waitFor(lambda: len(records(recordFile)) >= rate / 5, "the stream before the "
                     "handoff", 20)
        started = time.time()
        if onMove is not None:
            onMove()
        self.move(mag, timeout, steer, onLink)
        moved = time.time()
        self.waitFor(lambda: any(a > moved for _, a in records(recordFile)[-50:]),
                     f"the stream to resume through {mag}", timeout)
        time.sleep(settle)
        t.stop(sender, sig=signal.SIGTERM, timeout=10)
        # What is still queued on the way (a hold delivered in a burst, a
        # starved daemon) is late, not lost: stop once nothing more arrives.
        deadline, count = time.time() + 5 * kernel.timeScale(), -1
        while count != len(records(recordFile)) and time.time() < deadline:
            count = len(records(recordFile))
            time.sleep(0.3 * kernel.timeScale())
        t.stop(receiver, sig=signal.SIGTERM, timeout=10)
        t.stop(ping, sig=signal.SIGINT, timeout=10)
        result = analyse(int(_read(countFile) or 0), records(recordFile), since=started)
        sent, got, stamps = parsePing(_read(pingLog))
        gaps = [b - a for a, b in zip(stamps, stamps[1:]) if b > started]
        result.update(pingSent=sent, pingLost=sent - got,
                      pingInterruption=max(gaps) if gaps else float("inf"))
        return result

    def detach(self, timeout=20.0):
        """Take the MN's link away and wait for the deregistration."""
        phoa = self.topology.mn.address()
        before = self.log("lma").count("deregistered")
        self.topology.mn.detach()
        self.waitFor(lambda: self.log("lma").count("deregistered") > before,
                     f"the deregistration of {phoa}", timeout)




def parsePing(text):
    """(transmitted, received, reply timestamps) from `ping -D` output."""
    stamps = [float(m) for m in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", text, re.M)]
    m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
    sent, got = (int(m.group(1)), int(m.group(2))) if m else (0, len(stamps))
    return sent, got, stamps
