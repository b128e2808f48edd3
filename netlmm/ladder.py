"""
A ladder diagram of the messages actually exchanged, in the style of the
draft's Figures 2 and 3: one line per message with lanes for each node.
"""

from netlmm.wire import fho, mh
from netlmm.wire.control import AddressMode, Detach, Notification, Result, Trigger


def _mn(mnId):
    return mnId.decode("utf-8", "replace") if mnId is not None else "-"


def _auth(message):
    """' SPI=n' for a message carrying RFC 4285 authentication."""
    option = message.option(mh.MobilityMessageAuthentication)
    return "" if option is None else f" SPI={option.spi}"


def describe(message):
    """A message's name and key fields, for one line of a ladder."""
    kind = type(message)
    if kind is mh.BindingUpdate:
        hnp = message.option(mh.HomeNetworkPrefix)
        acoa = message.option(mh.AlternateCareOfAddress)
        mnId = message.option(mh.MobileNodeIdentifier)
        phoa = "-" if hnp is None else ("::(assign)" if hnp.unspecified else str(hnp.prefix))
        text = (f"PBU seq={message.sequence} pHoA={phoa} "
                f"pCoA={acoa.address if acoa else '-'} lifetime={message.lifetimeSeconds}s")
        if message.lifetime == 0:
            text += " (deregistration)"
        if mnId is not None:
            text += f" MN-ID={_mn(mnId.identifier)}"
        return text + _auth(message)
    if kind is mh.BindingAcknowledgement:
        hnp = message.option(mh.HomeNetworkPrefix)
        return (f"PBAck seq={message.sequence} status={message.status} "
                f"({mh.Status.name(message.status)}) pHoA={hnp.prefix if hnp else '-'} "
                f"lifetime={message.lifetimeSeconds}s" + _auth(message))
    if kind is mh.BindingError:
        return f"Binding Error status={message.status}"
    if kind in (fho.HandoverInitiate, fho.HandoverAcknowledge):
        return _handover(message)
    if kind is Trigger:
        return (f"Trigger txn={message.transaction} MN={_mn(message.mnId)} "
                f"pHoA={message.phoa or '-'} pCoA={message.magAddress} "
                f"mode={AddressMode.NAMES.get(message.mode, message.mode)}")
    if kind is Detach:
        return f"Detach txn={message.transaction} MN={_mn(message.mnId)} pCoA={message.magAddress}"
    if kind is Notification:
        text = (f"Notification txn={message.transaction} "
                f"result={Result.NAMES.get(message.result, message.result)} "
                f"pHoA={message.phoa or '-'}")
        if message.pback is not None:
            text += " [PBAck in container]"
        return text
    return kind.__name__


def _handover(message):
    """A HI or HAck between MAGs (RFC 5949) for a ladder line."""
    mnId = message.option(mh.MobileNodeIdentifier)
    hnp = message.option(mh.HomeNetworkPrefix)
    if type(message) is fho.HandoverInitiate:
        what = {fho.HiCode.REQUEST: "context request", fho.HiCode.ALL_CONTEXT: "context offer",
                fho.HiCode.FORWARDING_DONE: "forwarding done"}.get(message.code,
                                                                   f"code {message.code}")
        if message.code == fho.HiCode.REQUEST and message.flag(fho.HI_F) \
                and message.option(fho.ContextRequest) is None:
            what = "forwarding request"
        text = f"HI seq={message.sequence} {what}"
    else:
        text = (f"HAck seq={message.sequence} {message.code} "
                f"({fho.HackCode.name(message.code)})")
    text += f" MN={_mn(mnId.identifier) if mnId else '-'}"
    if hnp is not None and not hnp.unspecified:
        text += f" pHoA={hnp.prefix}"
    return text + _auth(message)


class Ladder:
    """
    Collects messages as C{observer} callbacks of the role services and
    renders them. C{names} maps a peer (an address, or (address, port)) to
    the lane it belongs to.
    """

    def __init__(self, lanes, start, clock):
        self.lanes = list(lanes)
        self.names = {}
        self.start = start
        self.clock = clock
        self.rows = []
        self._messages = []

    def observer(self, role, direction, message, peer):
        """
        The callable to hand to the services: records what they send, and
        marks a sent message "auth ok" when its receiver reports it
        "verified" (its RFC 4285 authenticator checked out).
        """
        if direction == "verified":
            for i in range(len(self._messages) - 1, -1, -1):
                index, sent = self._messages[i]
                if sent == message:
                    t, sender, receiver, text = self.rows[index]
                    self.rows[index] = (t, sender, receiver, text + " auth ok")
                    del self._messages[i]
                    break
            return
        if direction != "sent":
            return
        if message.__class__ in (mh.BindingUpdate, mh.BindingAcknowledgement):
            self._messages.append((len(self.rows), message))
            del self._messages[:-64]
        self.rows.append((self.clock.seconds() - self.start, role,
                          self.names.get(peer, str(peer)), describe(message)))

    def note(self, sender, receiver, text):
        """Record an event that is not a protocol message (the simulated MN)."""
        self.rows.append((self.clock.seconds() - self.start, sender, receiver, text))

    def render(self):
        """The diagram as lines."""
        width = max(8, max(len(n) for n in self.lanes) + 2)
        centres = {n: 9 + i * width + width // 2 for i, n in enumerate(self.lanes)}
        total = 9 + len(self.lanes) * width
        head = " time(s) ".ljust(9)
        for n in self.lanes:
            head += n.center(width)
        lines = [head.rstrip()]
        for t, sender, receiver, text in self.rows:
            row = [" "] * total
            for c in centres.values():
                row[c] = "|"
            a, b = centres.get(sender), centres.get(receiver)
            if a is not None and b is not None and a != b:
                lo, hi = min(a, b), max(a, b)
                for i in range(lo + 1, hi):
                    row[i] = "-"
                if b > a:
                    row[b - 1] = ">"
                else:
                    row[b + 1] = "<"
            stamp = f"{t:8.3f} "
            lines.append(stamp + "".join(row[9:]).rstrip().ljust(total - 9) + "  " + text)
        return lines
