"""
Two local mobility domains side by side, with a GMA in front, for the
cross-domain tests and `netlmm demo --netns --domains` (issue 10; draft 4.4,
4.6). Every node is a namespace; the daemons are the real ones.

    CN --- core (router, GMA) ==bridge core== LMA1, LMA2, PMIP1, PMIP2,
                                              MAG1, MAG2, MAG3
    MAG1 ==acc0==   LMA1's domain (PMIP1)
    MAG2 ==acc0==   both domains (PMIP1 and PMIP2, a mobile's client by
                    [mag.pmip_map]; PMIP1 knows LMA2 too and prefers it here)
    MAG3 ==acc0==   LMA2's domain (PMIP2)

Each domain is an LMA with its PMIP client; each LMA gives its mobiles a
/64 of its own pool (draft E.3, the MAGs' 'prefix' strategy), so a mobile
that changes domain gets an address under the other LMA's prefix. MAG2
keeps tunnels to both LMAs (the Notification names the LMA); its
[mag.pmip_map] picks a mobile's client there, and so the two ways of draft
4.4 to change anchor:

  - the Mobile IPv6 mobile (C{mn}) goes to PMIP2 at MAG2: "a new PMIP
    client may be invoked", which registers it with LMA2 (a new care-of
    address for the GMA); at MAG3 it stays with PMIP2 and LMA2;
  - the plain mobile (C{pn}) stays with PMIP1, which knows both LMAs and
    prefers LMA2 at MAG2 ([pmip.anchor.mags]): it hands the mobile over at
    LMA1, then moves it to LMA2; MAG2 advertises LMA2's prefix and
    deprecates LMA1's, whose binding stays until the old address is unused
    (old_prefix_idle, userspace data plane) or its lifetime ends.

The core namespace routes each LMA's pool to it and is the GMA's home (the
GMA of L{netlmm.lab.mip6}: home prefix 2001:db8:100::/64, care-of addresses
from both pools). C{mn} runs `netlmm mn` (L{startMobile}, after L{startAll}); C{pn} is a stock
Linux host. With C{gma=False} the GMA and `netlmm mn` are left out: the
rest runs on any kernel with one of the PMIP data planes (the host tests).
"""

import os
import re
import time
from ipaddress import IPv6Address, IPv6Network

from netlmm.lab import kernel
from netlmm.lab.domain import dataPlaneConfig, pickDataPlane
from netlmm.lab.mip6 import GMA_ADDRESS, HOME_ADDRESS, NEEDS, MobileIpv6Lab
from netlmm.lab.probes import ECHO_CLIENT, ECHO_SERVER, command, echoes
from netlmm.lab.netns import MOBILE_SYSCTLS, CommandFailed, Mobile, readText
from netlmm.lab.wait import waitFor

CN_ADDRESS = "2001:db8:c::2"
CORE_NET = "2001:db8:f::"
CORE_ROUTER = CORE_NET + "1"
LMAS = {"lma1": CORE_NET + "11", "lma2": CORE_NET + "12"}
PMIPS = {"pmip1": CORE_NET + "21", "pmip2": CORE_NET + "22"}
MAGS = {"mag1": CORE_NET + "31", "mag2": CORE_NET + "32", "mag3": CORE_NET + "33"}
#: LMA -> its home prefix and the pool its mobiles' prefixes come from.
HOMES = {"lma1": "2001:db8:11::/64", "lma2": "2001:db8:12::/64"}
POOLS = {"lma1": IPv6Network("2001:db8:110::/48"), "lma2": IPv6Network("2001:db8:120::/48")}
#: LMA -> its PMIP client (one domain each).
DOMAINS = {"lma1": "pmip1", "lma2": "pmip2"}
#: MAG -> the LMAs whose domains it is in (its PMIP clients are theirs).
MEMBERSHIP = {"mag1": ("lma1",), "mag2": ("lma1", "lma2"), "mag3": ("lma2",)}
MN_MAC = "02:00:00:00:bb:01"
PN_MAC = "02:00:00:00:bb:02"
#: At MAG2 (both domains): the MIPv6 mobile goes to LMA2's PMIP client, the
#: plain one stays with LMA1's, which moves its anchor to LMA2 there.
MAG2_MAP = {MN_MAC: "lma2", PN_MAC: "lma1"}
#: Seconds without a packet of the old prefix before MAG2 releases it.
OLD_PREFIX_IDLE = 5
CORE_MTU = 1700

_LMA = """[lma]
listen = "[{address}]:5436"
home_prefix = "{home}"
max_lifetime = 3600
allowed_clients = [{clients}]
[lma.prefixes]
pool = "{pool}"
length = 64
[lma.dataplane]
{plane}
"""

_PMIP = """[pmip]
listen = "[{address}]:5437"
mh_bind = "[{address}]:0"
allowed_mags = ["{core}/64"]
detach_delay = {detachDelay:g}
[pmip.tls]
transport = "tcp"
[[pmip.lmas]]
name = "{lma}"
address = "[{lmaAddress}]:5436"
prefixes = ["{home}", "{pool}"]
{more}[pmip.anchor]
policy = "static"
default = "{lma}"
{mags}"""

_MAG = """[mag]
name = "{name}"
address = "{address}"
lma_address = "{lma}"
{clients}
[mag.tls]
transport = "tcp"
[mag.access]
interface = "acc0"
ra_interval_max = 10
[mag.attachment]
detector = "rs"
idle_timeout = 0
[mag.assignment]
strategy = "prefix"
[mag.dataplane]
{plane}
{pmipMap}"""


def endpoint(pmip):
    return f"[{PMIPS[pmip]}]:5437"


class TwoDomains(MobileIpv6Lab):
    """The namespaces, daemons and moves of the two domains (see module)."""

    careOfNetworks = tuple(str(p) for p in POOLS.values())
    gmaInterface = "core"
    gmaNode = "core"

    def __init__(self, testCase=None, directory=None, prefix=None, dataplane=None, gma=True):
        self.dataplane, need = pickDataPlane(dataplane)
        needs = (need,) + (NEEDS if gma else ())
        super().__init__(testCase, directory, prefix, needs=tuple(dict.fromkeys(needs)))
        self.directory = os.path.abspath(self.directory)
        os.makedirs(self.directory, exist_ok=True)
        self.withGma = gma
        self.mobile = Mobile(self, "mn", MN_MAC)
        self.plain = Mobile(self, "pn", PN_MAC)
        self.daemons = {}

    # ------------------------------------------------------------ building

    def _build(self):
        self.add("cn")
        self.add("core", router=True)
        self.link("cn", "eth0", "core", "c0")
        self.addr("cn", "eth0", CN_ADDRESS + "/64")
        self.addr("core", "c0", "2001:db8:c::1/64")
        self.exec("cn", "ip", "-6", "route", "add", "default", "via", "2001:db8:c::1")
        self.exec("core", "ip", "-6", "addr", "add", GMA_ADDRESS + "/128", "dev", "lo")
        self.bridge("core", "core")
        self.addr("core", "core", CORE_ROUTER + "/64")
        nodes = dict(LMAS, **PMIPS, **MAGS)
        for i, (node, address) in enumerate(nodes.items()):
            self.add(node, router=not node.startswith("pmip"))
            self.link(node, "core0", "core", f"p{i}", mtu=CORE_MTU, master="core")
            self.addr(node, "core0", address + "/64")
            self.exec(node, "ip", "-6", "route", "add", "default", "via", CORE_ROUTER)
        self.exec("core", "ip", "link", "set", "core", "mtu", str(CORE_MTU))
        for lma, address in LMAS.items():
            for net in (HOMES[lma], POOLS[lma]):
                self.exec("core", "ip", "-6", "route", "add", str(net), "via", address)
        for i, mag in enumerate(MAGS, 1):
            self.bridge(mag, "acc0", f"02:00:00:00:0{i}:01")
        for node in ("mn", "pn"):
            # Lab.mobile(), which self.mobile (the MIPv6 mobile) hides here
            self.add(node, dad=True, sysctls=MOBILE_SYSCTLS)
        keys = self.path("keys.toml")
        fd = os.open(keys, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            from netlmm.lab.mip6 import KEY, MN_ID
            f.write(f'[[sa]]\nspi = 4000\nkey = "{KEY}"\nmn = "{MN_ID}"\n')

    # ------------------------------------------------------------ daemons

    def configs(self):
        """File name -> text of every PMIP-side daemon's config."""
        detachDelay = 3.0 * kernel.timeScale()
        files = {}
        for lma, address in LMAS.items():
            pmip = DOMAINS[lma]
            # LMA2 also takes PMIP1's registrations (its anchor moves at MAG2).
            clients = [PMIPS["pmip1"]] + ([PMIPS["pmip2"]] if lma == "lma2" else [])
            files[f"{lma}.toml"] = _LMA.format(
                address=address, home=HOMES[lma], pool=POOLS[lma],
                clients=", ".join(f'"{c}"' for c in clients),
                plane=dataPlaneConfig(self.dataplane, "lma", address, "core0"))
            more = mags = ""
            if pmip == "pmip1":
                more = ('[[pmip.lmas]]\nname = "lma2"\n'
                        f'address = "[{LMAS["lma2"]}]:5436"\n'
                        f'prefixes = ["{HOMES["lma2"]}", "{POOLS["lma2"]}"]\n')
                mags = f'[pmip.anchor.mags]\n"{MAGS["mag2"]}" = "lma2"\n'
            files[f"{pmip}.toml"] = _PMIP.format(
                address=PMIPS[pmip], core=CORE_NET, detachDelay=detachDelay, lma=lma,
                lmaAddress=address, home=HOMES[lma], pool=POOLS[lma], more=more, mags=mags)
        for mag, address in MAGS.items():
            lmas = MEMBERSHIP[mag]
            clients = [endpoint(DOMAINS[lma]) for lma in lmas]
            if len(clients) == 1:
                clientLines = f'pmip = "{clients[0]}"'
                pmipMap = ""
            else:
                clientLines = ("pmip_clients = [" + ", ".join(f'"{c}"' for c in clients) +
                               f"]\nold_prefix_idle = {OLD_PREFIX_IDLE}")
                pmipMap = "[mag.pmip_map]\n" + "".join(
                    f'"{mac}" = "{endpoint(DOMAINS[lma])}"\n' for mac, lma in MAG2_MAP.items())
            files[f"{mag}.toml"] = _MAG.format(
                name=mag.upper(), address=address, lma=LMAS[lmas[0]], clients=clientLines,
                plane=dataPlaneConfig(self.dataplane, "mag", address, "core0"),
                pmipMap=pmipMap)
        return files

    def startAll(self):
        """Build, then start the LMAs, PMIP clients, MAGs (and the GMA); returns self."""
        self.build()
        try:
            for name, text in self.configs().items():
                with open(self.path(name), "w") as f:
                    f.write(text)
            for lma in LMAS:
                self._daemon(lma, "lma", "LMA listening")
            for pmip in PMIPS:
                self._daemon(pmip, "pmip", "MAGs connect to")
            for mag in MAGS:
                self._daemon(mag, "mag", None)
            for mag in MAGS:
                self.waitDaemon(mag, "connected to PMIP client", count=len(MEMBERSHIP[mag]))
            if self.withGma:
                self.startGma()
                self.daemons["gma"] = self.gma
        except BaseException:
            self.destroy()
            raise
        return self

    def _daemon(self, node, role, ready):
        self.daemons[node] = self.twistd(node, role, self.path(f"{node}.toml"),
                                         self.path(f"{node}.log"))
        if ready:
            self.waitDaemon(node, ready)

    def waitDaemon(self, node, text, count=1, timeout=30):
        """Wait until C{node}'s daemon logged C{text} C{count} times."""
        self.waitLog(self.path(f"{node}.log"), text, self.daemons[node],
                     timeout=timeout, count=count)

    def logOf(self, node):
        """What C{node}'s daemon (or any process logging to NODE.log) logged so far."""
        return readText(self.path(f"{node}.log"))

    def logs(self):
        """The daemons' logs' tails, for failure messages."""
        return "\n".join(f"--- {n}.log\n{self.logOf(n)[-2500:]}" for n in self.daemons)

    def waitFor(self, predicate, what, timeout=20.0):
        """Poll C{predicate}; L{CommandFailed} with the logs on timeout or a daemon's exit."""
        waitFor(predicate, what, timeout,
                alive=lambda: all(p.poll() is None for p in self.daemons.values()),
                details=self.logs)

    # ------------------------------------------------------------ mobiles

    def attach(self, mobile, mag, timeout=20.0):
        """
        Plug C{mobile} (a L{Mobile}) into C{mag}'s access link and wait for
        its address from the LMA serving it there; returns that address.
        """
        mobile.attach(mag)
        self.waitFor(lambda: mobile.address() is not None,
                     f"{mobile.node}'s address at {mag}", timeout)
        return mobile.address()

    def move(self, mobile, mag, timeout=20.0):
        """
        Move C{mobile} to C{mag} (its link goes, a new one comes up with
        the same MAC). Returns (time the new link came up, monotonic; the
        new address once usable).
        """
        mobile.detach()
        moved = time.monotonic()
        return moved, self.attach(mobile, mag, timeout)

    def domainOf(self, address):
        """The LMA whose pool holds C{address}, or None."""
        for lma, pool in POOLS.items():
            if IPv6Address(address) in pool:
                return lma
        return None

    def describeAddresses(self, node, dev="eth0"):
        """C{node}'s global addresses, each followed by " (deprecated)" if it is."""
        out = self.exec(node, "ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "global",
                        check=False).stdout
        found = []
        for line in out.splitlines():
            words = line.split()
            if "inet6" in words:
                address = words[words.index("inet6") + 1].split("/")[0]
                found.append(address + (" (deprecated)" if "deprecated" in words else ""))
        return found

    def startMobile(self, extra="", lifetime=60):
        """`netlmm mn` on C{mn} (attach it first); returns when it is bound."""
        process = super().startMobile(extra, lifetime)
        self.daemons["mn"] = process
        return process

    def boundTo(self):
        """The care-of addresses `netlmm mn` logged as bound, in order."""
        return re.findall(r"MN: bound \S+ -> (\S+?),", readText(self.mnLog))

    def waitBound(self, careOf, timeout=30):
        """Wait until `netlmm mn` logged its binding to C{careOf}."""
        self.waitFor(lambda: str(careOf) in self.boundTo(),
                     f"mn's binding at the GMA to {careOf}", timeout)


class Echo:
    """
    A TCP connection from the correspondent to C{address}:C{port} on
    C{node}, kept busy by the echo probes (L{netlmm.lab.probes}): one echo
    every 50 ms, each logged with its (monotonic) time.
    """

    def __init__(self, lab, node, address, port):
        self.lab = lab
        serverLog, self.log = lab.path(f"server-{node}.log"), lab.path(f"echo-{node}.log")
        server = lab.start(node, command(ECHO_SERVER, address, port), log=serverLog)
        lab.waitLog(serverLog, "listening", server, timeout=30)
        self.client = lab.start("cn", command(ECHO_CLIENT, address, port, 0.05), log=self.log)
        lab.waitLog(self.log, "connected", self.client, timeout=30)
        lab.waitFor(lambda: len(echoes(self.log)[0]) >= 3, f"echoes from {node}", 30)

    def after(self, t):
        """The times of the echoes after C{t}."""
        return [at for at, _ in echoes(self.log)[0] if at > t]

    def firstAfter(self, t, timeout):
        """
        Seconds from C{t} to the first echo after it, once three came (the
        connection carries on), or None if they do not within C{timeout} s.
        """
        try:
            waitFor(lambda: len(self.after(t)) >= 3, "echoes", timeout,
                    alive=lambda: self.client.poll() is None)
        except CommandFailed:
            return None
        return self.after(t)[0] - t

    def intact(self):
        """Whether no echo was lost or reordered and the connection is still up."""
        rows, error = echoes(self.log)
        return (error is None and self.client.poll() is None
                and [n for _, n in rows] == list(range(1, len(rows) + 1)))


def crossDomains(lab, note=lambda sender, receiver, text: None, window=5.0):
    """
    The scenario of the check and the demo on a started L{TwoDomains}:
    L{mobileIpv6Moves}, then L{plainMove} (with the release of the old
    prefix where the data plane can tell it is unused: userspace). C{note(sender, receiver, text)}
    hears each step. Returns {"mn": ..., "pn": ...}, their results.
    """
    return {"mn": mobileIpv6Moves(lab, note, window),
            "pn": plainMove(lab, note, window, release=lab.dataplane == "userspace")}


def mobileIpv6Moves(lab, note=lambda sender, receiver, text: None, window=5.0):
    """
    The MIPv6 mobile attaches at MAG1 (LMA1's domain), registers its
    care-of address with the GMA, and moves MAG1 -> MAG2 (LMA2's domain for
    it: a new care-of address) -> MAG3 (LMA2's domain: the same one) with a
    TCP connection from the CN to its home address. Returns dict(before=[home, care-of], after=[home,
    care-of], moves=[(from, to, seconds from the new link to the first echo
    after it, or None if none within C{window} s)], survived=bool: no echo
    lost or reordered, and echoes after the last move).
    """
    mn = lab.mobile
    note("MN", "MAG1", "MN (netlmm mn) attaches at MAG1 (LMA1's domain)")
    careOf = lab.attach(mn, "mag1")
    lab.startMobile()
    lab.waitBound(careOf)
    note("GMA", "MN", f"MN bound at the GMA: {HOME_ADDRESS} -> care-of {careOf}")
    echo = Echo(lab, "mn", HOME_ADDRESS, 7000)
    note("CN", "MN", f"TCP connection CN -> {HOME_ADDRESS} (home address), echo every 50 ms")
    result = dict(before=[HOME_ADDRESS, str(careOf)], moves=[])
    for old, new in (("mag1", "mag2"), ("mag2", "mag3")):
        note("MN", new.upper(), f"MN moves {old.upper()} -> {new.upper()} "
             f"({lab.domainOf(careOf).upper()}'s domain until now)")
        previous = careOf
        moved, careOf = lab.move(mn, new)
        if careOf != previous:
            note(new.upper(), "MN", f"MN configures care-of {careOf} (SLAAC, "
                 f"{lab.domainOf(careOf).upper()}'s prefix)")
            lab.waitBound(careOf)
            note("GMA", "MN", f"MN bound at the GMA: {HOME_ADDRESS} -> care-of {careOf}")
        result["moves"].append((old, new, echo.firstAfter(moved, window)))
    result["after"] = [HOME_ADDRESS, str(careOf)]
    result["survived"] = echo.intact() and result["moves"][-1][2] is not None
    return result


def plainMove(lab, note=lambda sender, receiver, text: None, window=5.0, release=False):
    """
    The plain mobile attaches at MAG1 (LMA1's domain) and moves to MAG2,
    where its PMIP client moves its anchor to LMA2 (draft 4.4), with a TCP
    connection from the CN to its first address. Returns dict(before=[its
    address], after=[its addresses, "(deprecated)" after those that are],
    moves=[(from, to, seconds from the new link to the CN's first packet
    reaching the new address, or None)], survived=bool: the old connection's
    echoes went on, none lost, within C{window} s of the new link). With
    C{release}, then closes that connection and adds released=seconds from
    the close to MAG2 releasing the old prefix (None if not within
    C{window} s after old_prefix_idle).
    """
    pn = lab.plain
    note("PN", "MAG1", "PN (plain IPv6 host) attaches at MAG1 (LMA1's domain)")
    address = lab.attach(pn, "mag1")
    note("MAG1", "PN", f"PN configures {address} (SLAAC, LMA1's prefix)")
    echo = Echo(lab, "pn", address, 7001)
    note("CN", "PN", f"TCP connection CN -> {address}, echo every 50 ms")
    note("PN", "MAG2", "PN moves MAG1 -> MAG2 (its PMIP client prefers LMA2 there)")
    moved, _ = lab.move(pn, "mag2")

    def newAddresses():
        return [a for a in pn.addresses() if lab.domainOf(a) == "lma2"]
    lab.waitFor(newAddresses, "the plain mobile's address under LMA2's prefix", 20)
    [newAddress] = newAddresses()
    note("MAG2", "PN", f"PN configures {newAddress} (SLAAC, LMA2's prefix); {address} "
         "deprecated, still valid")

    def reached():
        return lab.exec("cn", "ping", "-6", "-c", "1", "-W", "1", str(newAddress),
                        check=False).returncode == 0
    try:
        waitFor(reached, f"the CN to reach {newAddress}", window)
        reachedAfter = time.monotonic() - moved
    except CommandFailed:
        reachedAfter = None
    first = echo.firstAfter(moved, window)
    result = dict(before=[str(address)], after=lab.describeAddresses("pn"),
                  moves=[("mag1", "mag2", reachedAfter)],
                  survived=first is not None and echo.intact())
    if release:
        note("CN", "PN", f"the TCP connection to {address} closes")
        lab.stop(echo.client)
        closed = time.monotonic()
        try:
            lab.waitFor(lambda: "releasing the old home" in lab.logOf("mag2"),
                        "MAG2 to release the old prefix", OLD_PREFIX_IDLE + window)
            result["released"] = time.monotonic() - closed
            note("MAG2", "PMIP1", f"{address}'s prefix released (unused "
                 f"{OLD_PREFIX_IDLE} s): LMA1's binding goes")
        except CommandFailed:
            result["released"] = None
    return result


__all__ = ["CommandFailed", "TwoDomains", "CN_ADDRESS", "HOME_ADDRESS", "GMA_ADDRESS",
           "POOLS", "LMAS", "MAGS", "PMIPS", "Echo", "crossDomains",
           "mobileIpv6Moves", "plainMove"]
