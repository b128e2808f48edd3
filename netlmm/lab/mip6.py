"""
A Mobile IPv6 mobile moving between access networks, with the real GMA
(`twistd netlmm-gma`) and the real mobile daemon (`netlmm mn`), for tests,
benchmarks and demos (root, a kernel with mip6, ip6tnl and seg6: under
kernel-lab on the build machines).

    CN --- GMA --- AR1 ==acc0== (MN)
             \\---- AR2 ==acc0==

The GMA is also the core router; its home prefix is virtual (routed to it).
AR1 and AR2 are plain access routers with prefixes 2001:db8:1::/64 and
2001:db8:2::/64. The mobile gets its care-of address on each (as a DHCPv6
server or SLAAC would give it) when L{MobileIpv6Lab.moveTo} attaches it; a
move deletes its link and creates one into the other router's bridge.
L{MobileIpv6Lab.startGma} and L{MobileIpv6Lab.startMobile} take extra
config text, so the two-domain setups of issue 10 can put LMAs in front.
"""

import os
import sys
import time

from netlmm.lab.netns import CommandFailed, Lab, Mobile
from netlmm.lab.wait import waitFor

HOME_PREFIX = "2001:db8:100::/64"
HOME_ADDRESS = "2001:db8:100::10"
GMA_ADDRESS = "2001:db8:ff::1"
CN_ADDRESS = "2001:db8:c::2"
MN_ID = "mn1@example.net"
MN_MAC = "02:00:00:00:bb:01"
#: Access router -> (its access prefix, the mobile's care-of address there,
#: the GMA's side of their link, the router's side).
ROUTERS = {
    "ar1": ("2001:db8:1::/64", "2001:db8:1::10", "2001:db8:f1::1", "2001:db8:f1::2"),
    "ar2": ("2001:db8:2::/64", "2001:db8:2::10", "2001:db8:f2::1", "2001:db8:f2::2"),
}
KEY = "6e65746c6d6d2d6c61622d6d69703620206b6579"
NEEDS = ("mip6", "ip6tnl", "seg6")


class MobileIpv6Lab(Lab):
    """The namespaces, the two daemons and the mobile's moves (see module)."""

    #: The networks care-of addresses come from, and the GMA's data-plane
    #: interface (subclasses with other access networks change them).
    careOfNetworks = tuple(p for p, *_ in ROUTERS.values())
    gmaInterface = "g0"
    #: The namespace the GMA runs in.
    gmaNode = "gma"

    def __init__(self, testCase=None, directory=None, prefix=None, needs=NEEDS):
        super().__init__(testCase, prefix, needs=needs)
        if directory is None:
            import tempfile
            directory = tempfile.mkdtemp(prefix="netlmm-mip6-")
        self.directory = directory
        self.gma = self.mn = None
        self.mobile = Mobile(self, "mn", MN_MAC)
        self.at = None

    def path(self, name):
        return os.path.join(self.directory, name)

    def _build(self):
        """The core router with the GMA, the correspondent, the routers, the mobile."""
        self.add("cn")
        self.add("gma", router=True)
        self.add("mn")
        self.link("cn", "c0", "gma", "g0", mtu=1600)
        self.addr("cn", "c0", CN_ADDRESS + "/64")
        self.addr("gma", "g0", "2001:db8:c::1/64")
        self.exec("cn", "ip", "-6", "route", "add", "default", "via", "2001:db8:c::1")
        self.exec("gma", "ip", "-6", "addr", "add", GMA_ADDRESS + "/128", "dev", "lo")
        for router, (prefix, _, gmaSide, routerSide) in ROUTERS.items():
            self.add(router, router=True)
            link = "g" + router[-1]
            self.link("gma", link, router, "up0", mtu=1600)
            self.addr("gma", link, gmaSide + "/64")
            self.addr(router, "up0", routerSide + "/64")
            self.exec("gma", "ip", "-6", "route", "add", prefix, "via", routerSide)
            self.exec(router, "ip", "-6", "route", "add", "default", "via", gmaSide)
            self.bridge(router, "acc0")
            self.exec(router, "ip", "link", "set", "acc0", "mtu", "1600")
            self.addr(router, "acc0", prefix.replace("::/64", "::1/64"))
        keys = self.path("keys.toml")
        fd = os.open(keys, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f'[[sa]]\nspi = 4000\nkey = "{KEY}"\nmn = "{MN_ID}"\n')

    def startGma(self, extra="", dataplane="seg6"):
        """`twistd -n netlmm-gma` in the GMA namespace; returns when it listens."""
        careOf = ", ".join(f'"{p}"' for p in self.careOfNetworks)
        config = self.path("gma.toml")
        with open(config, "w") as f:
            f.write(f"""[gma]
address = "{GMA_ADDRESS}"
home_prefix = "{HOME_PREFIX}"
care_of_networks = [{careOf}]
max_lifetime = 600
{extra}
[gma.mobiles]
"{MN_ID}" = "{HOME_ADDRESS}"
[gma.dataplane]
kind = "{dataplane}"
address = "{GMA_ADDRESS}"
interface = "{self.gmaInterface}"
[gma.security]
mode = "rfc4285"
keys = "keys.toml"
""")
        self.gmaLog = self.path("gma.log")
        self.gma = self.twistd(self.gmaNode, "gma", config, self.gmaLog)
        self.waitLog(self.gmaLog, "GMA listening", self.gma, timeout=60)
        return self.gma

    def startMobile(self, extra="", lifetime=60):
        """`netlmm mn` in the mobile's namespace; returns when it runs."""
        config = self.path("mn.toml")
        with open(config, "w") as f:
            f.write(f"""[mn]
id = "{MN_ID}"
home_address = "{HOME_ADDRESS}"
home_agent = "{GMA_ADDRESS}"
home_prefix = "{HOME_PREFIX}"
lifetime = {lifetime}
interfaces = ["eth0"]
{extra}
[mn.security]
mode = "rfc4285"
keys = "keys.toml"
""")
        self.mnLog = self.path("mn.log")
        self.mn = self.start("mn", [sys.executable, "-m", "netlmm.cli", "mn", "--config",
                                    config], log=self.mnLog)
        self.waitLog(self.mnLog, "MN mn1@example.net: home address", self.mn, timeout=60)
        return self.mn

    def moveTo(self, router):
        """
        Take the mobile off its access link (its care-of address goes with
        it) and onto C{router}'s, with that network's care-of address and
        default route. Returns the time (monotonic) the address was added.
        """
        self.mobile.detach()
        self.mobile.attach(router)
        prefix, careOf, *_ = ROUTERS[router]
        self.exec("mn", "ip", "-6", "route", "replace", "default", "via",
                  prefix.replace("::/64", "::1"), "dev", "eth0", "onlink")
        added = time.monotonic()
        self.addr("mn", "eth0", careOf + "/64")
        self.at = router
        return added

    def waitBound(self, router, count=1, timeout=30):
        """Wait until the mobile logged its COUNTth binding to C{router}'s address."""
        careOf = ROUTERS[router][1]
        self.waitLog(self.mnLog, f"-> {careOf},", self.mn, timeout=timeout, count=count)

    def waitLog(self, path, text, process, timeout=30, count=1):
        def found():
            try:
                with open(path) as f:
                    return f.read().count(text) >= count
            except FileNotFoundError:
                return False

        def details():
            try:
                with open(path) as f:
                    return f.read()[-3000:]
            except FileNotFoundError:
                return "(no log)"
        waitFor(found, f"{text!r} in {os.path.basename(path)}", timeout=timeout,
                alive=lambda: process.poll() is None, details=details)

    def log(self, which):
        with open(self.gmaLog if which == "gma" else self.mnLog) as f:
            return f.read()


__all__ = ["CommandFailed", "MobileIpv6Lab", "ROUTERS", "HOME_ADDRESS", "GMA_ADDRESS",
           "CN_ADDRESS"]
