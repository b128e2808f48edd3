"""
`netlmm demo`: one process, loopback only, no root. An LMA, a PMIP client and
two MAGs run as real services over real sockets (MH over UDP, the MAG <->
PMIP client protocol over TCP), and a simulated mobile node goes through
initial attachment at MAG1 (Figure 2, pHoA assigned by the LMA as in
Appendix A), handoff to MAG2 (Figure 3), handoff back to MAG1 and detachment.
"""

import sys
from ipaddress import IPv6Address

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater

from netlmm.access import AttachmentEvent
from netlmm.assignment.lma import LmaAssignment
from netlmm.core.lma import AddressPool, LmaCore
from netlmm.core.mag import MagCore
from netlmm.core.pmip import PmipCore
from netlmm.dataplane.memory import MemoryDataPlane
from netlmm.ladder import Ladder
from netlmm.service.lma import LmaService, formatBindings
from netlmm.service.mag import MagService
from netlmm.service.pmip import PmipService
from netlmm.transport.channel import Channel

LOOPBACK = IPv6Address("::1")
HOME_PREFIX = "2001:db8:1::/64"
TLS_DOMAIN = "demo.example"
MAG_ADDRESSES = (IPv6Address("2001:db8:ff::1"), IPv6Address("2001:db8:ff::2"))


class DemoFailed(Exception):
    """A step of the demo did not happen as the protocol says it must."""


class Domain:
    """
    A local mobility domain on loopback: L{lma}, L{pmip}, and L{mags}, each a
    started service with an in-memory data plane. Ports are chosen by the
    kernel, so it runs beside real daemons.
    """

    def __init__(self, reactor, observer=None, magCount=2, detachDelay=0.5,
                 lifetime=3600, tls=True, security=True,
                 mobiles=(b"mn1@example.net",), lmaKeys=None, pmipKeys=None):
        self.reactor = reactor
        # PBUs and PBAcks carry RFC 4285 authentication: one per-MN SA per
        # mobile (draft 4.3), with keys generated in memory for this run.
        self.keys = None
        if security:
            from netlmm.security.auth import SecurityAssociation
            from netlmm.security.keystore import KeyStore, generateKey
            self.keys = KeyStore(
                SecurityAssociation(1000 + i, generateKey(), "hmac-sha1-96", mnId)
                for i, mnId in enumerate(mobiles))
        # Key stores of their own per role (e.g. keys from AAA), if given.
        self.roleKeys = {"lma": lmaKeys, "pmip": pmipKeys}
        # The MAG <-> PMIP client channel is mutually authenticated TLS with
        # certificates from a throwaway CA that lives only in memory.
        self.ca = None
        if tls:
            from netlmm import pki
            self.ca = pki.makeCA(TLS_DOMAIN, days=1)
        self.lmaPlane = MemoryDataPlane()
        self.lma = LmaService(
            reactor,
            LmaCore(HOME_PREFIX, [f"{LOOPBACK}/128"], maxLifetime=3600,
                    pool=AddressPool("2001:db8:1::100", "2001:db8:1::1ff")),
            (LOOPBACK, 0), "udp", self.lmaPlane, observer,
            security=self._guard("lma"))
        self.observer = observer
        self.magCount = magCount
        self.detachDelay = detachDelay
        self.lifetime = lifetime
        self.pmip = None
        self.mags = []
        self.strategies = []

    def _guard(self, role):
        keys = self.roleKeys[role] if self.keys is not None else None
        keys = keys if keys is not None else self.keys
        if keys is None:
            return None
        from netlmm.security.guard import LmaGuard, PmipGuard
        return LmaGuard(keys) if role == "lma" else PmipGuard(keys)

    @inlineCallbacks
    def start(self):
        """Start the LMA, then the PMIP client, then the MAGs."""
        yield self.lma.startService()
        self.pmip = PmipService(
            self.reactor,
            PmipCore(LOOPBACK, lifetime=self.lifetime, detachDelay=self.detachDelay,
                     security=self._guard("pmip")),
            (LOOPBACK, 0), (LOOPBACK, 0), "udp", self.lma.port.port,
            [f"{LOOPBACK}/128"], self.observer, channel=self._channel("pmip", "pmip1"))
        yield self.pmip.startService()
        pmipPort = self.pmip.listening.getHost().port
        for i in range(self.magCount):
            strategy = LmaAssignment()
            mag = MagService(
                self.reactor, MagCore(MAG_ADDRESSES[i], LOOPBACK),
                (LOOPBACK, pmipPort), strategy, MemoryDataPlane(),
                observer=self.observer, name=f"MAG{i + 1}",
                channel=self._channel("mag", f"MAG{i + 1}"))
            yield mag.startService()
            self.mags.append(mag)
            self.strategies.append(strategy)
        yield self.connected()

    def _channel(self, role, name):
        """TLS with a certificate from the throwaway CA; plain TCP without one."""
        if self.ca is None:
            return Channel("tcp")
        from netlmm import pki
        from netlmm.transport.tls import Credentials
        cert, key = pki.issue(*self.ca, role, name, days=1)
        return Channel("tls", Credentials(self.ca[0], cert, key),
                       "pmip1" if role == "mag" else None)

    def channelNote(self, mag):
        """How C{mag} is connected to the PMIP client, for the ladder."""
        proto = mag.connection
        if proto is None or proto.identity is None:
            return "plain TCP, unauthenticated"
        version = proto.transport.getHandle().get_protocol_version_name()
        own = mag.channel.credentials
        return (f"{version} mutually authenticated: {mag.name} is {own.role}:{own.name}, "
                f"peer {proto.identity[0]}:{proto.identity[1]}, CA {TLS_DOMAIN}")

    def connected(self):
        """Fires when every MAG has its PMIP client connection."""
        return self._until(lambda: all(m.connection for m in self.mags), 5,
                           "MAGs did not connect to the PMIP client")

    def _until(self, predicate, timeout, what):
        """Poll C{predicate} every 5 ms; fail with C{what} after C{timeout} s."""
        deadline = self.reactor.seconds() + timeout
        d = Deferred()

        def check():
            if predicate():
                d.callback(None)
            elif self.reactor.seconds() > deadline:
                d.errback(DemoFailed(what))
            else:
                self.reactor.callLater(0.005, check)
        check()
        return d

    @inlineCallbacks
    def stop(self):
        """Stop everything, MAGs first."""
        for mag in reversed(self.mags):
            yield mag.stopService()
        if self.pmip is not None:
            yield self.pmip.stopService()
        yield self.lma.stopService()


@inlineCallbacks
def run(reactor, out=sys.stdout, mnId=b"mn1@example.net"):
    """Run the scenario; fires with 0, or fails with L{DemoFailed}."""
    ladder = Ladder(["MN", "MAG1", "MAG2", "PMIP client", "LMA"], reactor.seconds(),
                    reactor)
    domain = Domain(reactor, ladder.observer)
    ladder.names[LOOPBACK] = "LMA"
    snapshots = []
    try:
        yield domain.start()
        lma, pmip = domain.lma, domain.pmip
        ladder.names[(LOOPBACK, lma.port.port)] = "LMA"
        ladder.names[(LOOPBACK, pmip.port.port)] = "PMIP client"
        ladder.names[(LOOPBACK, pmip.listening.getHost().port)] = "PMIP client"
        for i, mag in enumerate(domain.mags):
            ladder.names[mag.core.address] = mag.name
            ladder.note(mag.name, "PMIP client", domain.channelNote(mag))
        mag1, mag2 = domain.mags
        s1, s2 = domain.strategies
        given = {}
        for strategy, mag in ((s1, mag1), (s2, mag2)):
            strategy.listeners.append(
                lambda mn, phoa, mag=mag: (
                    given.__setitem__(mag.name, phoa),
                    ladder.note(mag.name, "MN", f"pHoA {phoa} handed to the MN "
                                "(MAG as DHCP proxy, Appendix A)")))

        def bindingAt(mag):
            b = lma.core.bindingFor(mnId)
            return b is not None and b.pcoa == mag.core.address

        def boundAt(mag):
            a = mag.core.attachment(mnId)
            return a is not None and a.state == "BOUND" and bindingAt(mag)

        # 1. Initial attachment at MAG1 (Figure 2, Appendix A).
        ladder.note("MN", "MAG1", f"1. L2 attachment, MN ID {mnId.decode()}")
        mag1.attached(AttachmentEvent(mnId))
        yield domain._until(lambda: boundAt(mag1) and "MAG1" in given, 10,
                            "initial attachment at MAG1 did not complete")
        phoa = given["MAG1"]
        if IPv6Address(phoa) not in lma.core.homePrefix:
            raise DemoFailed(f"the LMA assigned {phoa}, outside {HOME_PREFIX}")
        snapshots.append(("after attachment at MAG1", formatBindings(lma.core, reactor.seconds())))

        # 2. and 3. Handoffs (Figure 3): the MN appears at the new MAG, then
        # its old link goes away.
        for step, new, old in ((2, mag2, mag1), (3, mag1, mag2)):
            given.pop(new.name, None)
            ladder.note("MN", new.name, f"{step}. L2 handoff {old.name} -> {new.name}")
            new.attached(AttachmentEvent(mnId))
            yield domain._until(lambda: boundAt(new) and old.core.attachment(mnId) is None,
                                10, f"handoff to {new.name} did not complete")
            old.detached(mnId)
            if given.get(new.name) != phoa:
                raise DemoFailed(f"the MN's pHoA changed on handoff to {new.name}: "
                                 f"{phoa} -> {given.get(new.name)}")
            if domain.lmaPlane.routes.get(phoa) != new.core.address:
                raise DemoFailed(f"the LMA's route for {phoa} does not point at {new.name}")
            snapshots.append((f"after handoff to {new.name}",
                              formatBindings(lma.core, reactor.seconds())))

        # 4. Detachment: deregistration with lifetime 0.
        ladder.note("MN", "MAG1", "4. L2 detachment")
        mag1.detached(mnId)
        yield domain._until(lambda: lma.core.bindingFor(mnId) is None
                            and mag1.core.attachment(mnId) is None
                            and pmip.core.mobile(mnId) is None, 10,
                            "deregistration did not complete")
        if phoa in domain.lmaPlane.routes:
            raise DemoFailed("the LMA still routes the pHoA after deregistration")
        snapshots.append(("after detachment", formatBindings(lma.core, reactor.seconds())))
        yield deferLater(reactor, 0.05, lambda: None)
    finally:
        try:
            yield domain.stop()
        finally:
            for line in ladder.render():
                print(line, file=out)
            for title, lines in snapshots:
                print(f"\nLMA binding cache {title}:", file=out)
                for line in lines:
                    print("  " + line, file=out)
    counters = lma.core.counters
    print(f"\nLMA counters: {counters}", file=out)
    if lma.security is not None:
        print(f"RFC 4285 at the LMA: {lma.security.counters}; at the PMIP client: "
              f"{pmip.core.security.counters}", file=out)
    return 0


def main(argv=None):
    """Entry point of `netlmm demo`: exit status 0 on success."""
    from twisted.internet import reactor
    from twisted.internet.task import react

    def go(reactor):
        d = run(reactor)

        def failed(f):
            f.trap(DemoFailed, OSError)
            print(f"\ndemo FAILED: {f.value}", file=sys.stderr)
            raise SystemExit(1)
        return d.addErrback(failed)
    react(go, [])
