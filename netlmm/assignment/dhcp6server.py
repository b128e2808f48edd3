"""
The MAG as its mobiles' DHCPv6 server, for the 'lma-assigned' strategy
(draft Appendix A): the address it hands out is the pHoA the LMA assigned.
"""

import uuid
from collections import OrderedDict

from netlmm.access.dhcp6 import MAX_REMEMBERED, AccessDhcp6
from netlmm.wire import dhcp6
from netlmm.wire.control import showMnId
from netlmm.wire.dhcp6 import (
    ClientId, IaAddress, IaNa, Message, Preference, RapidCommit, ServerId, StatusCode,
)
from netlmm.wire.icmpv6 import macText


class DhcpProxyServer(AccessDhcp6):
    """
    The MAG as the mobile's DHCPv6 server (draft Appendix A), for the
    'lma-assigned' strategy: a client's Solicit, Request, Renew, Rebind or
    Confirm makes C{trigger(mnId)} run (once per attachment); the answer goes
    when L{bound} tells the pHoA the LMA assigned. Every MAG of the domain
    uses the same server DUID (a DUID-UUID derived from the LMD prefix), so a
    Renew that names the first MAG's server is answered by the next.
    """

    def __init__(self, reactor, link, trigger, serverDuid=None, preferred=1800, valid=3600,
                 t1=None, t2=None, interface=None, system=None):
        super().__init__(reactor, link, interface, system)
        self.trigger = trigger
        prefix = getattr(link.config, "prefix", None)
        self.serverDuid = serverDuid or dhcp6.duidUUID(
            uuid.uuid5(uuid.NAMESPACE_URL, f"netlmm:lmd:{prefix or self.interface}"))
        self.preferred = preferred
        self.valid = valid
        self.t1 = int(preferred * 0.5) if t1 is None else t1
        self.t2 = int(preferred * 0.8) if t2 is None else t2
        #: MN identifier -> [(message, peer)] waiting for the pHoA.
        self.waiting = {}
        #: MN identifier -> the bound pHoA.
        self.addresses = {}
        #: MN identifiers triggered in this attachment.
        self.triggered = set()
        #: Messages from clients not (yet) attached: MAC -> [(message, peer)].
        self.early = OrderedDict()

    def start(self):
        self._open()
        self.log.info("lma-assigned strategy: DHCPv6 server on {interface}",
                      interface=self.interface)

    def stop(self):
        self._close()

    def attached(self, mnId, mac):
        self.attachedMobiles[mnId] = mac
        self.triggered.discard(mnId)
        self.addresses.pop(mnId, None)
        for message, peer in self.early.pop(mac, []):
            self._ask(mnId, message, peer)

    def bound(self, mnId, phoa):
        self.addresses[mnId] = phoa
        for message, peer in self.waiting.pop(mnId, []):
            self._answer(message, peer, phoa)

    def unbound(self, mnId):
        self.attachedMobiles.pop(mnId, None)
        self.triggered.discard(mnId)
        self.addresses.pop(mnId, None)
        left = self.waiting.pop(mnId, [])
        if left:
            self.log.warn("lma-assigned: {mnId} is not bound; {n} DHCPv6 message(s) stay "
                          "unanswered", mnId=showMnId(mnId), n=len(left))

    def clientMessage(self, message, data, peer, mac):
        if message.type == dhcp6.REQUEST and message.serverDuid != self.serverDuid:
            self.log.debug("lma-assigned: a Request for another server ignored")
            return
        if message.type == dhcp6.SOLICIT and message.serverDuid is not None:
            return
        if message.type in (dhcp6.RELEASE, dhcp6.DECLINE, dhcp6.INFORMATION_REQUEST):
            # The binding stays until the mobile detaches (the LMA owns the address).
            self.toClient(dhcp6.encode(self._reply(dhcp6.REPLY, message, [])), peer)
            return
        mnId = self.mnIdOf(mac) if mac is not None else None
        if mnId is None:
            if mac is None:
                self.log.warn("lma-assigned: DHCPv6 {kind} from {peer} whose MAC is unknown; "
                              "ignored", kind=message.name, peer=peer)
                return
            self.log.info("lma-assigned: DHCPv6 {kind} from {mac}, not attached yet",
                          kind=message.name, mac=macText(mac))
            self.early.setdefault(mac, []).append((message, peer))
            del self.early[mac][:-4]
            while len(self.early) > MAX_REMEMBERED:
                self.early.popitem(last=False)
            return
        self._ask(mnId, message, peer)

    def _ask(self, mnId, message, peer):
        phoa = self.addresses.get(mnId)
        if phoa is not None:
            self._answer(message, peer, phoa)
            return
        queue = self.waiting.setdefault(mnId, [])
        queue.append((message, peer))
        del queue[:-4]
        if mnId not in self.triggered:
            self.triggered.add(mnId)
            self.log.info("lma-assigned: DHCPv6 {kind} from {mnId}; asking the LMA for "
                          "an address", kind=message.name, mnId=showMnId(mnId))
            self.trigger(mnId)

    def _reply(self, kind, message, options):
        out = [ServerId(self.serverDuid)]
        if message.clientDuid is not None:
            out.append(ClientId(message.clientDuid))
        return Message(kind, message.transaction, out + list(options))

    def _answer(self, message, peer, phoa):
        if message.type == dhcp6.CONFIRM:
            addresses = [a.address for _, a in dhcp6.iaAddresses(message, success=False)]
            ok = all(a == phoa for a in addresses)
            status = StatusCode(dhcp6.SUCCESS if ok else dhcp6.NOT_ON_LINK,
                                "confirmed" if ok else "not the address of this mobile")
            self.toClient(dhcp6.encode(self._reply(dhcp6.REPLY, message, [status])), peer)
            return
        ias = []
        for ia in message.all(IaNa):
            options = [IaAddress(phoa, self.preferred, self.valid)]
            # Addresses the client still holds that are not its pHoA: lifetime 0.
            options += [IaAddress(a.address, 0, 0) for a in ia.addresses
                        if a.address != phoa]
            ias.append(IaNa(ia.iaid, self.t1, self.t2, options))
        if not ias:
            ias = [StatusCode(dhcp6.NO_ADDRS_AVAIL, "no IA_NA in the request")]
        if message.type == dhcp6.SOLICIT and message.option(RapidCommit) is None:
            kind, extra = dhcp6.ADVERTISE, [Preference(255)]
        else:
            kind = dhcp6.REPLY
            extra = [RapidCommit()] if message.type == dhcp6.SOLICIT else []
        answer = self._reply(kind, message, ias + extra)
        self.log.info("lma-assigned: {kind} with {phoa} to {peer}",
                      kind=dhcp6.MESSAGE_NAMES[kind], phoa=phoa, peer=peer)
        self.toClient(dhcp6.encode(answer), peer)
