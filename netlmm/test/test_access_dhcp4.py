"""
The MAG's DHCPv4 server (RFC 5844 3.4) without root: the answers it puts on
the access link (checked with scapy as the independent decoder), the router
addresses on the access interface, and its config.
"""

import errno
from ipaddress import IPv4Address, IPv4Interface, IPv6Network
from socket import AF_INET

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from netlmm.access import AttachmentEvent
from netlmm.access.dhcp4 import Dhcp4Server, RouterAddresses
from netlmm.access.link import AccessConfig, AccessLink
from netlmm.config import ConfigError, Table
from netlmm.core.mag import Homes
from netlmm.daemon import StartupError, describeFailure
from netlmm.dataplane import _netlink as nl
from netlmm.lab.fakes import FakeAccessSystem, FakeNetlink
from netlmm.wire import dhcp4
from netlmm.wire.dhcp4 import Message, Option, addresses, messageType
from netlmm.test.test_assignment_prefix import perMnConfig
from netlmm.wire.icmpv6 import macText

try:
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    _SCAPY_SKIP = None
except ModuleNotFoundError as e:  # pragma: no cover - depends on the environment
    if not (e.name or "").startswith("scapy"):
        raise
    _SCAPY_SKIP = f"scapy is not installed ({e})"

OWN_MAC = FakeAccessSystem().mac
MAC = bytes.fromhex("02000000aa01")
MAC2 = bytes.fromhex("02000000bb01")
MNID, MNID2 = macText(MAC).encode(), macText(MAC2).encode()
V4 = IPv4Interface("10.20.0.5/24")
V4B = IPv4Interface("10.20.0.6/24")
ROUTER = IPv4Address("10.20.0.1")
HNP = IPv6Network("2001:db8:1:a::/64")
BROADCAST = IPv4Address("255.255.255.255")


def request(kind, chaddr=MAC, xid=7, flags=0, ciaddr="0.0.0.0", options=()):
    return Message(dhcp4.BOOTREQUEST, xid, chaddr, ciaddr=ciaddr, flags=flags,
                   options=[messageType(kind)] + list(options))


class Dhcp4ServerTests(SynchronousTestCase):

    skip = _SCAPY_SKIP

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.system = FakeAccessSystem()
        self.link = AccessLink(self.reactor, perMnConfig(), self.system)
        self.link.start()
        self.fake = FakeNetlink(links=("lo", "acc0"))
        self.routers = RouterAddresses("acc0", netlink=lambda: self.fake,
                                       runner=nl.ImmediateRunner())
        self.server = self.make()
        self.server.attached(AttachmentEvent(MNID, linkLayer=macText(MAC)))

    def make(self, **kw):
        server = Dhcp4Server(self.reactor, self.link, routers=self.routers, **kw)
        self.successResultOf(self.routers.start())
        return server

    def receive(self, message):
        self.server._received(dhcp4.encode(message), [], ("0.0.0.0", 68))

    def bind(self, mnId=MNID, ipv4=V4, router=ROUTER):
        self.server.bound(mnId, Homes(None, HNP, ipv4, router))

    def sent(self):
        """Every answer frame, decoded by scapy."""
        return [Ether(data) for data, _ in self.system.sockets[1].sent]

    def assertAnswer(self, frame, kind, yiaddr, destination, dstMac=MAC):
        """The frame is a well-formed answer of C{kind}: addresses and checksums."""
        self.assertEqual((frame.dst, frame.src, frame[IP].src, frame[IP].dst),
                         (macText(dstMac), macText(OWN_MAC), str(ROUTER), str(destination)))
        self.assertEqual((frame[UDP].sport, frame[UDP].dport), (67, 68))
        # scapy recomputes the checksums: ours must be the same.
        ip, udp = frame[IP].chksum, frame[UDP].chksum
        again = Ether(bytes(frame))
        del again[IP].chksum, again[UDP].chksum
        again = Ether(bytes(again))
        self.assertEqual((again[IP].chksum, again[UDP].chksum), (ip, udp))
        self.assertEqual((frame[BOOTP].op, frame[BOOTP].yiaddr), (2, str(yiaddr)))
        options = dict(o for o in frame[DHCP].options if isinstance(o, tuple))
        self.assertEqual(options["message-type"], kind)
        return options

    def test_discoverWaitsForTheBinding(self):
        """A DHCPDISCOVER before the binding is answered when the binding comes."""
        self.receive(request(dhcp4.DISCOVER, options=[Option(55, bytes((1, 3, 26)))]))
        self.assertEqual(self.sent(), [])
        self.bind()
        [offer] = self.sent()
        options = self.assertAnswer(offer, 2, V4.ip, V4.ip)
        self.assertEqual(options, {
            "message-type": 2, "server_id": str(ROUTER), "lease_time": 3600,
            "renewal_time": 1800, "rebinding_time": 3150, "subnet_mask": "255.255.255.255",
            "router": str(ROUTER), "interface-mtu": 1460})
        self.assertEqual(self.server.counters["offers"], 1)

    def test_broadcastFlag(self):
        """A client that asks for broadcast answers gets 255.255.255.255 (still to its MAC)."""
        self.bind()
        self.receive(request(dhcp4.DISCOVER, flags=dhcp4.BROADCAST))
        self.assertAnswer(self.sent()[0], 2, V4.ip, BROADCAST)

    def test_selecting(self):
        """DHCPREQUEST naming this server and the address: DHCPACK."""
        self.bind()
        self.receive(request(dhcp4.REQUEST, options=[
            addresses(dhcp4.SERVER_ID, ROUTER), addresses(dhcp4.REQUESTED_ADDRESS, V4.ip)]))
        options = self.assertAnswer(self.sent()[0], 5, V4.ip, V4.ip)
        self.assertNotIn("interface-mtu", options)  # not asked for
        self.assertEqual(self.server.counters["acks"], 1)

    def test_otherServerChosen(self):
        """DHCPREQUEST naming another server: no answer."""
        self.bind()
        self.receive(request(dhcp4.REQUEST, options=[
            addresses(dhcp4.SERVER_ID, "10.99.0.1"), addresses(dhcp4.REQUESTED_ADDRESS, V4.ip)]))
        self.assertEqual((self.sent(), self.server.counters["ignored"]), ([], 1))

    def test_initRebootAfterHandoff(self):
        """
        A mobile that moved here asks again for its address (INIT-REBOOT):
        once bound with that address it is ACKed; another address is NAKed.
        """
        self.receive(request(dhcp4.REQUEST, options=[
            addresses(dhcp4.REQUESTED_ADDRESS, V4.ip)]))
        self.bind()
        self.assertAnswer(self.sent()[0], 5, V4.ip, V4.ip)
        self.receive(request(dhcp4.REQUEST, xid=8, options=[
            addresses(dhcp4.REQUESTED_ADDRESS, "10.20.0.99")]))
        nak = self.sent()[1]
        options = self.assertAnswer(nak, 6, "0.0.0.0", BROADCAST)
        self.assertEqual(options, {"message-type": 6, "server_id": str(ROUTER)})
        self.assertEqual(self.server.counters["naks"], 1)

    def test_renewing(self):
        """A renewal (ciaddr set, unicast to the router) is ACKed to ciaddr."""
        self.bind()
        self.receive(request(dhcp4.REQUEST, ciaddr=V4.ip))
        self.assertAnswer(self.sent()[0], 5, V4.ip, V4.ip)
        self.receive(request(dhcp4.REQUEST, ciaddr="10.20.0.7"))
        self.assertAnswer(self.sent()[1], 6, "0.0.0.0", BROADCAST)

    def test_inform(self):
        """DHCPINFORM: configuration without an address or lease."""
        self.bind()
        self.receive(request(dhcp4.INFORM, ciaddr=V4.ip))
        options = self.assertAnswer(self.sent()[0], 5, "0.0.0.0", V4.ip)
        self.assertNotIn("lease_time", options)

    def test_homeSubnet(self):
        """subnet = "home": the home network's mask, and its broadcast when asked."""
        self.server = self.make(subnet="home")
        self.server.attached(AttachmentEvent(MNID, linkLayer=macText(MAC)))
        self.bind()
        self.receive(request(dhcp4.DISCOVER, options=[Option(55, bytes((1, 3, 28)))]))
        options = self.assertAnswer(self.sent()[0], 2, V4.ip, V4.ip)
        self.assertEqual((options["subnet_mask"], options["broadcast_address"]),
                         ("255.255.255.0", "10.20.0.255"))

    def test_beforeAttachment(self):
        """Messages of a MAC not attached wait for its attachment."""
        self.receive(request(dhcp4.DISCOVER, chaddr=MAC2))
        self.server.attached(AttachmentEvent(MNID2, linkLayer=macText(MAC2)))
        self.bind(MNID2, V4B)
        self.assertAnswer(self.sent()[0], 2, V4B.ip, V4B.ip, dstMac=MAC2)

    def test_boundWithoutIpv4(self):
        """No IPv4 address in the binding: nothing to answer with; the wait ends."""
        self.receive(request(dhcp4.DISCOVER))
        self.server.bound(MNID, Homes(None, HNP, None, None))
        self.assertEqual((self.sent(), self.server.waiting), ([], {}))
        self.receive(request(dhcp4.DISCOVER))
        self.assertEqual(self.sent(), [])

    def test_ignored(self):
        """Undecodable, BOOTREPLY, BOOTP without a type, not Ethernet: no answer."""
        self.bind()
        for data in (b"junk",
                     dhcp4.encode(Message(dhcp4.BOOTREPLY, 1, MAC, options=[messageType(2)])),
                     dhcp4.encode(Message(dhcp4.BOOTREQUEST, 1, MAC)),
                     dhcp4.encode(Message(dhcp4.BOOTREQUEST, 1, bytes(8), htype=6,
                                          options=[messageType(1)]))):
            self.server._received(data, [], ("0.0.0.0", 68))
        self.receive(request(dhcp4.RELEASE, ciaddr=V4.ip))
        self.receive(request(dhcp4.DECLINE, options=[addresses(50, V4.ip)]))
        self.assertEqual(self.sent(), [])

    def test_routerAddresses(self):
        """
        The router goes on the access interface (label acc0:nl) with its first
        mobile and away with its last.
        """
        index = self.fake.links["acc0"]["index"]
        self.bind()
        self.server.attached(AttachmentEvent(MNID2, linkLayer=macText(MAC2)))
        self.bind(MNID2, V4B)
        self.assertEqual(self.fake.addr("dump", family=AF_INET), [
            dict(index=index, address=str(ROUTER), prefixlen=32, family=AF_INET,
                 label="acc0:nl")])
        self.server.unbound(MNID)
        self.assertEqual(len(self.fake.addr("dump", family=AF_INET)), 1)
        self.server.unbound(MNID2)
        self.assertEqual(self.fake.addr("dump", family=AF_INET), [])

    def test_routerLeftovers(self):
        """At start, router addresses a killed run left are removed, others stay."""
        index = self.fake.links["acc0"]["index"]
        self.fake.addr("add", index=index, address="10.20.0.1", prefixlen=32,
                       label="acc0:nl")
        self.fake.addr("add", index=index, address="192.0.2.1", prefixlen=24, label="acc0")
        self.successResultOf(RouterAddresses("acc0", netlink=lambda: self.fake,
                                             runner=nl.ImmediateRunner()).start())
        self.assertEqual([a["address"] for a in self.fake.addr("dump", family=AF_INET)],
                         ["192.0.2.1"])

    def test_stop(self):
        self.bind()
        self.successResultOf(self.server.stop())
        self.assertEqual(self.fake.addr("dump", family=AF_INET), [])

    def test_socketRefused(self):
        """A socket the server cannot open stops the MAG with one line naming it."""
        def refuse(interface):
            raise PermissionError(errno.EACCES, "Permission denied")
        self.system.dhcp4ServerSocket = refuse
        e = self.assertRaises(StartupError, self.server.start, None)
        self.assertEqual(str(e), "DHCPv4 on 'acc0': permission denied")
        self.assertEqual(describeFailure(e), "DHCPv4 on 'acc0': permission denied")

    def test_unboundForgets(self):
        self.bind()
        self.server.unbound(MNID)
        self.receive(request(dhcp4.DISCOVER))
        self.assertEqual(self.sent(), [])
        self.assertEqual((self.server.leases, self.server.attachedMobiles), ({}, {}))


class ConfigTests(SynchronousTestCase):

    def build(self, data, access=True):
        link = AccessLink(MemoryReactorClock(),
                          AccessConfig.fromTable(Table({"interface": "acc0"}, "mag.access")),
                          FakeAccessSystem()) if access else None
        return Dhcp4Server.fromTable(Table(data, "mag.ipv4"), MemoryReactorClock(), link)

    def test_defaults(self):
        server = self.build({})
        self.assertEqual((server.leaseTime, server.subnet, server.interface),
                         (3600, "host", "acc0"))

    def test_errors(self):
        for data, access, text in [
                ({"dhcp": "relay"}, True, "mag.ipv4.dhcp: only 'server' is supported (the MAG "
                 "answers with the address the LMA assigned, RFC 5844 3.4), got 'relay'"),
                ({"lease_time": 10}, True, "mag.ipv4.lease_time: expected a value from 60"),
                ({"subnet": "all"}, True, "mag.ipv4.subnet: expected one of"),
                ({"nope": 1}, True, "mag.ipv4.nope: unknown key"),
                ({}, False, "mag.ipv4: the DHCPv4 server runs on the access link; it needs "
                 "[mag.access]")]:
            e = self.assertRaises(ConfigError, self.build, data, access)
            self.assertIn(text, str(e))


class TapTests(SynchronousTestCase):
    """The MAG's config file: per-MN prefixes, IPv4 and the access technology."""

    BASE = """
[mag]
address = "2001:db8:ff::1"
lma_address = "::1"
{mag}
[mag.dataplane]
kind = "memory"
[mag.attachment]
detector = "rs"
[mag.access]
interface = "acc0"
[mag.assignment]
strategy = "prefix"
[mag.tls]
transport = "tcp"
{extra}
"""

    def options(self, mag="", extra=""):
        import os
        import tempfile
        from netlmm.tap.mag import Options
        fd, path = tempfile.mkstemp(suffix=".toml")
        os.write(fd, self.BASE.format(mag=mag, extra=extra).encode())
        os.close(fd)
        self.addCleanup(os.unlink, path)
        o = Options()
        o.parseOptions(["--config", path])
        return o.built

    def test_prefixAndIpv4(self):
        """[mag.ipv4] makes the DHCPv4 server on the strategy's access link and the policy."""
        from netlmm.assignment.prefix import PrefixAssignment
        b = self.options(extra="[mag.ipv4]\nlease_time = 600\nsubnet = 'home'\n")
        self.assertIsInstance(b["strategy"], PrefixAssignment)
        self.assertIsInstance(b["ipv4"], Dhcp4Server)
        self.assertIs(b["ipv4"].link, b["strategy"].link)
        self.assertEqual((b["ipv4"].leaseTime, b["ipv4"].subnet), (600, "home"))
        self.assertEqual((b["core"]["ipv4"], b["core"]["accessTechnology"]), (True, 3))

    def test_withoutIpv4(self):
        b = self.options()
        self.assertEqual((b["ipv4"], b["core"]["ipv4"]), (None, False))

    def test_accessTechnology(self):
        for value, expected in (("'wlan'", 4), ("'wimax'", 5), ("'virtual'", 1), ("8", 8)):
            b = self.options(mag=f"access_technology = {value}")
            self.assertEqual(b["core"]["accessTechnology"], expected)

    def test_oldPrefix(self):
        """How long an old prefix is kept after an anchor move (draft 4.4), and bad values."""
        from twisted.python import usage
        b = self.options()
        self.assertEqual((b["core"]["oldLifetime"], b["core"]["idleRelease"]), (3600, 60))
        b = self.options(mag="old_prefix_lifetime = 900\nold_prefix_idle = 0")
        self.assertEqual((b["core"]["oldLifetime"], b["core"]["idleRelease"]), (900, 0))
        for line, key in (("old_prefix_lifetime = 0", "mag.old_prefix_lifetime"),
                          ("old_prefix_lifetime = 1.5", "mag.old_prefix_lifetime"),
                          ("old_prefix_idle = -1", "mag.old_prefix_idle")):
            e = self.assertRaises(usage.UsageError, self.options, mag=line)
            self.assertIn(key + ":", str(e))

    def test_badAccessTechnology(self):
        from twisted.python import usage
        for value in ("0", "256", "'wifi'", "true"):
            e = self.assertRaises(usage.UsageError, self.options,
                                  mag=f"access_technology = {value}")
            self.assertIn("mag.access_technology: expected one of 'virtual', 'ppp', "
                          "'ethernet', 'wlan', 'wimax' or a number 1..255", str(e))


class ServiceTests(SynchronousTestCase):
    """
    The MAG service wiring: the attachment's MAC goes into the Trigger, the
    Notification's homes into the data plane, the strategy and the DHCPv4
    server. The PMIP client is played by hand (the Triggers stay queued).
    """

    def test_dualStackBinding(self):
        from ipaddress import IPv4Address, IPv4Interface
        from netlmm.assignment.prefix import PrefixAssignment
        from netlmm.core.mag import MagCore
        from netlmm.test.test_assignment_prefix import HNP_A, MAC_A, frames, perMnConfig
        from netlmm.dataplane import _netlink as nl
        from netlmm.dataplane.memory import MemoryDataPlane
        from netlmm.service.mag import MagService
        from netlmm.wire.control import AddressMode
        from netlmm.wire.control import Notification, Result
        reactor = MemoryReactorClock()
        system = FakeAccessSystem()
        link = AccessLink(reactor, perMnConfig(), system)
        fake = FakeNetlink(links=("lo", "acc0"))
        dhcp = Dhcp4Server(reactor, link, routers=RouterAddresses(
            "acc0", netlink=lambda: fake, runner=nl.ImmediateRunner()))
        plane = MemoryDataPlane()
        core = MagCore("2001:db8:ff::1", "2001:db8:ff::99", accessTechnology=4, ipv4=True)
        mag = MagService(reactor, core, ("::1", 1), PrefixAssignment(reactor, link), plane,
                         ipv4=dhcp)
        mag.strategy.start(mag)
        dhcp.start(mag)
        self.addCleanup(dhcp.stop)
        mag.attached(AttachmentEvent(macText(MAC_A).encode(), linkLayer=macText(MAC_A)))
        [trigger] = mag.core.requests()
        self.assertEqual((trigger.mode, trigger.linkLayerId, trigger.accessTechnology,
                          str(trigger.ipv4)),
                         (AddressMode.PREFIX, MAC_A, 4, "0.0.0.0/0"))
        router = IPv4Address("10.20.0.1")
        mag.feed(mag.core.receiveNotification, Notification(
            trigger.transaction, Result.SUCCESS, trigger.mnId, prefix=HNP_A,
            ipv4=IPv4Interface("10.20.0.5/24"), ipv4Router=router))
        self.assertEqual(set(plane.tunnels), {HNP_A, IPv4Address("10.20.0.5")})
        self.assertEqual(mag.homes(trigger.mnId).prefix, HNP_A)
        [(frame, ra, _)] = frames(system)
        self.assertEqual((frame.destinationMac, [p.prefix for p in ra.prefixes]),
                         (MAC_A, [HNP_A]))
        self.assertEqual(dhcp.leases[trigger.mnId].address, IPv4Address("10.20.0.5"))
        self.assertEqual([a["address"] for a in fake.addr("dump")], [str(router)])
        mag.detached(trigger.mnId)
        self.assertEqual(plane.tunnels, {})
        [detach] = mag.core.requests()
        self.assertEqual((type(detach).__name__, detach.linkLayerId), ("Detach", MAC_A))
        mag.feed(mag.core.receiveNotification, Notification(
            detach.transaction, Result.SUCCESS, trigger.mnId))
        self.assertEqual((dhcp.leases, fake.addr("dump")), ({}, []))
