"""
The GMA daemon: RFC 6275 signalling socket (L{MIP6Port}) + L{GmaCore} + a
data plane that tunnels each home address to its care-of address (the LMA's
data planes, role "lma").
"""

from twisted.internet.defer import maybeDeferred
from twisted.internet.threads import deferToThread

from netlmm.core.effects import RouteAdd, RouteMove, RouteRemove, SendToMobile
from netlmm.daemon import StartupError, reasonOf, startupStep
from netlmm.ratelimit import Refusing
from netlmm.service.base import RoleService
from netlmm.transport.mip6 import Xfrm, XfrmError
from netlmm.wire import mh


class GmaService(Refusing, RoleService):
    """
    Answers mobiles' home registrations on C{port} (a L{MIP6Port}) and
    drives C{dataplane}.

    @param security: None, or a L{netlmm.security.guard.LmaGuard} checking
        every Binding Update (RFC 4285, the care-of and home addresses taken
        from the packet's headers) before the core sees it, and signing the
        answers.
    @param xfrm: the L{Xfrm} that lets the kernel take Home Address options
        (None: install nothing, for tests).
    """

    refusalPrefix = "GMA: "

    def __init__(self, reactor, core, port, dataplane, security=None, xfrm=None,
                 observer=None, name="GMA"):
        super().__init__(reactor, core, observer)
        self.setName(name)
        self.port = port
        port.handler = self._received
        self.dataplane = dataplane
        self.security = security
        self.xfrm = xfrm
        self._verdict = None
        core.refused = self._refused

    def startService(self):
        d = startupStep(f"GMA: data plane {getattr(self.dataplane, 'name', '?')!r}",
                        self.dataplane.start)
        if self.xfrm is not None:
            d.addCallback(lambda _: deferToThread(self.xfrm.install,
                                                  Xfrm.homeAgentCommands()))
            d.addErrback(self._xfrmFailed)

        def listen(_):
            self.restoreState()
            try:
                self.port.startListening()
            except OSError as e:
                raise StartupError(
                    f"GMA: cannot open a raw Mobility Header socket on "
                    f"{self.port.address}: {reasonOf(e)}") from None
            self.log.info("GMA listening for Binding Updates on {address}, home prefix "
                          "{prefix}, {n} mobiles", address=self.port.address,
                          prefix=self.core.homePrefix, n=len(self.core.mobiles))
            RoleService.startService(self)
        return d.addCallback(listen)

    def _xfrmFailed(self, failure):
        failure.trap(XfrmError)
        raise StartupError(
            "GMA: this kernel does not take Home Address options (it needs "
            f"CONFIG_IPV6_MIP6, module mip6): {failure.value}")

    def stopService(self):
        self.port.stopListening()
        self.stopRefusing()
        d = maybeDeferred(RoleService.stopService, self)
        if self.xfrm is not None:
            d.addCallback(lambda _: self.xfrm.remove())
        return d.addCallback(lambda _: self.dataplane.stop())

    # ------------------------------------------------------------ receiving

    def _received(self, message, raw, careOf, home, destination, now):
        try:
            mobile = None
            if self.security is not None and type(message) is mh.BindingUpdate:
                verdict = self.security.check(message, raw, careOf, now,
                                              coaHoa=_coaHoa(careOf, home))
                if not verdict.ok:
                    self._refuse(message, careOf, home, verdict, now)
                    return
                self._verdict = verdict
                mobile = verdict.sa.mnId
                self.observe("verified", message, (careOf, 0))
            self.feed(self.core.receive, message, careOf, home, mobile)
        finally:
            self._verdict = None

    def _refuse(self, bu, careOf, home, verdict, now):
        """Answer a Binding Update that failed the security checks; nothing changes."""
        name = mh.Status.name(verdict.status)
        self._refused(careOf, name, "BU seq {seq} for {home} from {source} refused with "
                      "{status}: {reason}", seq=bu.sequence, home=home or careOf,
                      source=careOf, status=name, reason=verdict.reason)
        ba = mh.BindingAcknowledgement(verdict.status, 0, bu.sequence, 0)
        ba = self.security.answer(ba, verdict, now, _coaHoa(careOf, home))
        self.port.sendToMobile(ba, careOf, home, octets=self.security.octets.take(ba))

    # ------------------------------------------------------------ effects

    def execute(self, effects):
        for e in effects:
            kind = type(e)
            if kind is SendToMobile:
                message = e.message
                if self._verdict is not None and type(message) is mh.BindingAcknowledgement:
                    # Signed in one encoding: sent as the security layer encoded it.
                    message = self.security.answer(message, self._verdict,
                                                   self.reactor.seconds(),
                                                   _coaHoa(e.careOf, e.home))
                    self.port.sendToMobile(message, e.careOf, e.home,
                                           octets=self.security.octets.take(message))
                else:
                    self.port.sendToMobile(message, e.careOf, e.home)
            elif kind is RouteAdd:
                self.dataPlaneCall(self.dataplane.addRoute, e.phoa, e.pcoa)
            elif kind is RouteMove:
                self.dataPlaneCall(self.dataplane.moveRoute, e.phoa, e.old, e.new)
            elif kind is RouteRemove:
                self.dataPlaneCall(self.dataplane.removeRoute, e.phoa, e.pcoa)

    def bindingTable(self, now=None):
        """The binding cache as text lines, one binding a line."""
        now = self.reactor.seconds() if now is None else now
        rows = [("home address", "MN identifier", "care-of address", "seq", "expires in")]
        for b in sorted(self.core.bindings.values(), key=lambda b: int(b.home)):
            rows.append((str(b.home), b.mnId.decode("utf-8", "replace"), str(b.careOf),
                         str(b.sequence), f"{max(0, b.expiry - now):.0f} s"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _coaHoa(careOf, home):
    """The RFC 4285 (care-of, home) pair of a packet: both its source at home."""
    return (careOf, careOf if home is None else home)
