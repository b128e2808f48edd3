"""
The two ends of RFC 4285 protection between PMIP client and LMA, as pure
objects with synchronous key lookups (nothing here imports Twisted):

  - L{PmipGuard} adds the replay option and the authentication option to
    every PBU and checks each PBAck before the PMIP client core acts on it;
  - L{LmaGuard} checks each PBU before the LMA core sees it (status 146, 145,
    144 or 129 when it fails) and signs the LMA's answers.

Order of the options: ... | Replay Protection (10) | Authentication (9), the
authentication option last (RFC 4285), so the timestamp is covered by the
authenticator.

Status codes for a PBU that fails (RFC 4285 section 8 / RFC 6275 registry):

  - 146 MIPV6-AUTH-FAIL: no authentication option, not last, unknown SPI,
    wrong authenticator;
  - 145 MIPV6-MESG-ID-REQD: authenticated but no replay protection option;
  - 144 MIPV6-ID-MISMATCH: the timestamp is outside the window or not later
    than the last accepted one; the answer carries the LMA's own time so
    the client can correct its clock offset;
  - 129 administratively prohibited: the SA is valid but not for this PMIP
    client or not for this mobile.

Both guards sign with L{netlmm.security.auth.signEncoded}: the message is
encoded once, and its octets wait in the guard's C{octets}
(L{SignedOctets}) for the transport, which sends them as they are. Both
check a received message on its octets, locating the authentication option
once.

Answers to PBUs that authenticated are signed with the same SA and echo the
PBU's timestamp; the PMIP client accepts a PBAck only when it echoes a
timestamp of a PBU it sent (each at most once), which also stops PBAcks
from being replayed.

RFC 5846 Binding Revocation goes the other way through the same layer
(RFC 5846 section 12 asks BRI and BRA to be protected as the BU and BA
are): the LMA signs each BRI it sends (L{LmaGuard.protectRevocation}) with
the SA the client's PBUs for that mobile use, with a fresh timestamp; the
PMIP client checks it as the LMA checks a PBU (SA, mobile, timestamp within
the window and later than the last, L{PmipGuard.acceptRevocation}) and
signs its BRA with that SA, echoing the timestamp; the LMA accepts a BRA
only when it echoes a BRI it sent (L{LmaGuard.acceptRevocation}).
"""

from collections import namedtuple

from netlmm.security.auth import (
    AuthenticationError, SignedOctets, addresses, locate, signEncoded, verifyLocated)
from netlmm.security.replay import (
    DEFAULT_MAX_OFFSET, DEFAULT_WINDOW, ClockOffset, ReplayWindow, fromNtp, toNtp)
from netlmm.wire import mh
from netlmm.wire.mh import Status

Auth = mh.MobilityMessageAuthentication
Replay = mh.MobilityMessageReplayProtection


class Verdict(namedtuple("Verdict", "status reason sa timestamp mnId")):
    """
    The outcome of checking a PBU: C{status} None when it may go on to the
    core, else the BA status to answer with. C{sa} is the SA that
    authenticated it (None when authentication failed).
    """

    __slots__ = ()

    @property
    def ok(self):
        return self.status is None


def _mobileOf(message, mobileOf):
    mnIdOpt = message.option(mh.MobileNodeIdentifier)
    if mnIdOpt is not None:
        return mnIdOpt.identifier
    hnp = message.option(mh.HomeNetworkPrefix)
    if hnp is not None and not hnp.unspecified and mobileOf is not None:
        return mobileOf(hnp.prefix)
    return None


def spiOf(message):
    """The SPI of C{message}'s authentication option, or None."""
    o = message.option(Auth)
    return None if o is None else o.spi


class LmaGuard:
    """
    @param keys: a L{netlmm.security.keystore.KeyStore} (or anything with
        C{bySpi}).
    @param window: replay window, seconds.
    """

    def __init__(self, keys, window=DEFAULT_WINDOW):
        self.keys = keys
        self.replay = ReplayWindow(window)
        #: The octets of the answers signed, until the transport sends them.
        self.octets = SignedOctets()
        # (SPI, client address as int) -> (SA, whether it may use it).
        self._clients = {}
        # (client address as int, BRI sequence number) -> the timestamps of
        # the copies of that BRI sent, until it is answered or given up.
        self._revocations = {}
        self.counters = {"verified": 0, "authFailed": 0, "unauthorized": 0,
                         "missingReplay": 0, "replayed": 0}

    def check(self, bu, raw, source, now, mobileOf=None, coaHoa=None):
        """
        Check PBU C{bu} decoded from C{raw}, sent by C{source}.
        C{mobileOf(phoa)} names the mobile bound to a pHoA (or None);
        C{coaHoa} gives the authenticator's addresses when the packet's
        headers carry them (L{netlmm.security.auth.signEncoded}).
        """
        try:
            option, mhData = locate(bu, raw)
        except AuthenticationError as e:
            return self._fail(146, str(e), None, None)
        sa = self.keys.bySpi(option.spi)
        if sa is None:
            return self._fail(146, f"unknown SPI {option.spi}", None, None)
        try:
            verifyLocated(bu, option, mhData, sa, coaHoa)
        except AuthenticationError as e:
            return self._fail(146, f"SPI {sa.spi}: {e}", None, None)
        mnId = _mobileOf(bu, mobileOf)
        if not self._allowsClient(sa, source):
            return self._fail(129, f"SPI {sa.spi} is not for PMIP client {source}",
                              sa, None, "unauthorized", mnId)
        if mnId is not None and not sa.allowsMobile(mnId):
            return self._fail(129, f"SPI {sa.spi} does not cover MN "
                              f"{mnId.decode('utf-8', 'replace')}", sa, None,
                              "unauthorized", mnId)
        replay = bu.option(Replay)
        if replay is None:
            return self._fail(145, "no replay protection option", sa, None,
                              "missingReplay", mnId)
        why = self.replay.check(sa.spi, replay.timestamp, now)
        if why is not None:
            return self._fail(144, why, sa, replay.timestamp, "replayed", mnId)
        self.replay.accept(sa.spi, replay.timestamp)
        self.counters["verified"] += 1
        return Verdict(None, "", sa, replay.timestamp, mnId)

    def _allowsClient(self, sa, source):
        """L{SecurityAssociation.allowsClient}, remembered per SA and client."""
        key = (sa.spi, int(source))
        known = self._clients.get(key)
        if known is not None and known[0] is sa:
            return known[1]
        allowed = sa.allowsClient(source)
        if len(self._clients) >= 4096:
            self._clients.clear()
        self._clients[key] = (sa, allowed)
        return allowed

    def _fail(self, status, reason, sa, timestamp, counter="authFailed", mnId=None):
        self.counters[counter] += 1
        return Verdict(status, reason, sa, timestamp, mnId)

    def answer(self, ba, verdict, now, coaHoa=None):
        """
        Protect the LMA's answer C{ba} to a PBU that got C{verdict}: echo the
        timestamp (or, for 144, give the LMA's time) and sign with the SA;
        the octets wait in L{octets}. Without an SA (authentication failed)
        the answer goes unsigned.
        """
        if verdict.sa is None:
            return ba
        if ba.status == Status.MIPV6_ID_MISMATCH or verdict.timestamp is None:
            timestamp = toNtp(now)
        else:
            timestamp = verdict.timestamp
        return _signed(ba, timestamp, verdict.sa, coaHoa, self.octets)

    def protectRevocation(self, bri, mnId, client, now):
        """
        Binding Revocation Indication C{bri} about C{mnId} to PMIP client
        C{client}, with replay protection (now) and signed with the SA that
        client's PBUs for the mobile use; its octets wait in L{octets}.
        None when no SA is at hand.
        """
        sa = self.keys.forMobile(mnId, client) if hasattr(self.keys, "forMobile") else None
        if sa is None:
            return None
        timestamp = toNtp(now)
        key = (int(client), bri.sequence)
        # The timestamps of the copies sent (a retransmission is signed again).
        sent = self._revocations.pop(key, ())[-3:] + (timestamp,)
        if len(self._revocations) >= 4096:
            # BRIs given up long ago: the oldest go.
            del self._revocations[next(iter(self._revocations))]
        self._revocations[key] = sent
        return _signed(bri, timestamp, sa, None, self.octets)

    def acceptRevocation(self, bra, raw, mnId, client):
        """
        None when Binding Revocation Acknowledgement C{bra} (decoded from
        C{raw}) from C{client} is authentic, signed with an SA for C{mnId}
        and C{client}, and echoes the timestamp of a BRI sent to it with its
        sequence number (forgotten then); otherwise the reason to drop it.
        """
        sa = _signer(bra, raw, self.keys, "BRA")
        if type(sa) is str:
            return sa
        if not (sa.allowsMobile(mnId) and sa.allowsClient(client)):
            return f"BRA signed with SPI {sa.spi}, which is not for this mobile and client"
        replay = bra.option(Replay)
        key = (int(client), bra.sequence)
        if replay is None or replay.timestamp not in self._revocations.get(key, ()):
            return "BRA timestamp echoes no BRI sent (replayed BRA?)"
        del self._revocations[key]
        return None

    def rejection(self, bu, verdict, now):
        """The (protected) PBAck that refuses C{bu} with C{verdict.status}."""
        options = []
        hnp = bu.option(mh.HomeNetworkPrefix)
        if hnp is not None and not hnp.unspecified:
            options.append(hnp)
        mnIdOpt = bu.option(mh.MobileNodeIdentifier)
        if mnIdOpt is not None:
            options.append(mnIdOpt)
        ba = mh.BindingAcknowledgement(
            verdict.status, mh.BA_P if bu.flags & mh.BU_P else 0, bu.sequence, 0,
            options)
        return self.answer(ba, verdict, now)


#: What L{PmipGuard.accept} may say besides a reason to drop.
OK = None
RESYNC = "resync"


class PmipGuard:
    """
    @param keys: a key store with C{forMobile} and C{bySpi}.
    @param maxOffset: the largest clock offset (LMA's time minus ours,
        either sign, seconds) an authenticated 144 may set; a 144 reporting
        a time further off is dropped, and so is one whose time is not later
        than the last 144 that was followed (a replayed 144 cannot pull the
        clock back).
    """

    def __init__(self, keys, maxOffset=DEFAULT_MAX_OFFSET, client=None):
        self.keys = keys
        self.clock = ClockOffset(maxOffset)
        self.client = client
        #: The octets of the PBUs signed, until the transport sends them.
        self.octets = SignedOctets()
        self._lastSent = {}
        self._sent = {}
        # SPI -> the timestamp of the last BRI accepted.
        self._lastRevocation = {}
        self.counters = {"signed": 0, "noKey": 0, "verified": 0, "dropped": 0,
                         "resyncs": 0}

    @property
    def offset(self):
        """The LMA's clock minus ours, learnt from authenticated 144 answers."""
        return self.clock.offset

    @property
    def maxOffset(self):
        """The bound on L{offset}, seconds."""
        return self.clock.maxOffset

    def hasKey(self, mnId):
        """True when an SA for mobile C{mnId} is at hand."""
        return self.keys.forMobile(mnId, self.client) is not None

    def protect(self, pbu, mnId, now, coaHoa=None):
        """
        C{pbu} with replay protection and authentication, or None (no SA);
        its octets wait in L{octets}. C{coaHoa} as for
        L{netlmm.security.auth.signEncoded}.
        """
        sa = self.keys.forMobile(mnId, self.client)
        if sa is None:
            self.counters["noKey"] += 1
            return None
        timestamp = toNtp(now + self.offset)
        last = self._lastSent.get(sa.spi)
        if last is not None and timestamp <= last:
            timestamp = last + 1
        self._lastSent[sa.spi] = timestamp
        # The timestamps of this mobile's PBUs not answered yet, the newest
        # 16: a tuple, and none at all once every one was answered, so that a
        # million bound mobiles keep nothing here.
        self._sent[mnId] = self._sent.get(mnId, ())[-15:] + (timestamp,)
        self.counters["signed"] += 1
        return _signed(pbu, timestamp, sa, coaHoa, self.octets)

    def forget(self, mnId):
        """Drop what is remembered about C{mnId}'s PBUs."""
        self._sent.pop(mnId, None)

    def accept(self, ba, raw, mnId, now, coaHoa=None):
        """
        L{OK} when PBAck C{ba} (decoded from C{raw}) is authentic and answers
        a PBU sent for C{mnId}; L{RESYNC} for an authentic 144 (the clock
        offset is corrected: send again); otherwise the reason to drop it.
        C{coaHoa} as for L{protect}.
        """
        why = self._check(ba, raw, mnId, now, coaHoa)
        if why is OK:
            self.counters["verified"] += 1
        elif why is RESYNC:
            self.counters["resyncs"] += 1
        else:
            self.counters["dropped"] += 1
        return why

    def _check(self, ba, raw, mnId, now, coaHoa=None):
        sa = _signer(ba, raw, self.keys, "PBAck", coaHoa)
        if type(sa) is str:
            return sa
        if not sa.allowsMobile(mnId):
            return f"PBAck signed with SPI {sa.spi}, which is not {mnId!r}'s"
        replay = ba.option(Replay)
        if replay is None:
            return "PBAck without replay protection option"
        if ba.status == Status.MIPV6_ID_MISMATCH:
            return self._resync(replay.timestamp, now)
        sent = self._sent.get(mnId)
        timestamp = replay.timestamp
        if not sent or timestamp not in sent:
            return "PBAck timestamp echoes no PBU sent (replayed PBAck?)"
        rest = tuple(t for t in sent if t != timestamp)
        if rest:
            self._sent[mnId] = rest
        else:
            del self._sent[mnId]
        return OK

    def acceptRevocation(self, bri, raw, now, window=DEFAULT_WINDOW):
        """
        The SA of Binding Revocation Indication C{bri} (decoded from C{raw})
        when it is authentic, names its mobile by MN identifier, is signed
        with an SA for it, and its timestamp is within C{window} seconds of
        the LMA's clock (as far as we know it) and later than the last BRI's
        of that SA; otherwise the reason to drop it (a str).
        """
        sa = _signer(bri, raw, self.keys, "BRI")
        if type(sa) is str:
            return sa
        mnIdOpt = bri.option(mh.MobileNodeIdentifier)
        if mnIdOpt is None or not sa.allowsMobile(mnIdOpt.identifier):
            return f"BRI signed with SPI {sa.spi} names no mobile of that SA"
        replay = bri.option(Replay)
        if replay is None:
            return "BRI without replay protection option"
        skew = fromNtp(replay.timestamp) - (now + self.offset)
        if abs(skew) > window:
            return f"BRI timestamp is {skew:+.3f} s from the LMA's clock (window {window:g} s)"
        last = self._lastRevocation.get(sa.spi)
        if last is not None and replay.timestamp <= last:
            return "BRI timestamp is not later than the last one accepted (replay)"
        self._lastRevocation[sa.spi] = replay.timestamp
        return sa

    def answerRevocation(self, bra, bri, sa):
        """
        BRA C{bra} answering C{bri} (which L{acceptRevocation} took),
        echoing its timestamp and signed with its SA C{sa}; its octets wait
        in L{octets}.
        """
        return _signed(bra, bri.option(Replay).timestamp, sa, None, self.octets)

    def _resync(self, lmaTime, now):
        """Follow the LMA's time from an authentic 144, within bounds."""
        why = self.clock.follow(fromNtp(lmaTime), now)
        return RESYNC if why is None else f"144: {why}"


def _signer(message, raw, keys, what, coaHoa=None):
    """
    The SA (from C{keys}) whose authenticator C{message}, decoded from
    C{raw}, carries and verifies (C{coaHoa} as for
    L{netlmm.security.auth.signEncoded}); otherwise the reason, naming the
    message as C{what}.
    """
    try:
        option, mhData = locate(message, raw)
    except AuthenticationError as e:
        return f"unauthenticated {what}: {e}"
    sa = keys.bySpi(option.spi)
    if sa is None:
        return f"{what} with unknown SPI {option.spi}"
    try:
        verifyLocated(message, option, mhData, sa, coaHoa)
    except AuthenticationError as e:
        return f"{what} SPI {sa.spi}: {e}"
    return sa


def _signed(message, timestamp, sa, coaHoa, octets):
    """
    C{message} with the replay protection option for C{timestamp} and
    signed with C{sa} in one encoding, whose octets go to C{octets}.
    """
    options = tuple(o for o in message.options if type(o) not in (Auth, Replay))
    draft = tuple.__new__(type(message), message[:-1] + (
        options + (Replay(timestamp),),))
    signed, data = signEncoded(draft, sa, coaHoa)
    octets.keep(signed, data)
    return signed


def describeAuth(message):
    """'SPI=n' for a message with an authentication option, else None."""
    option = message.option(Auth)
    if option is None:
        return None
    return f"SPI={option.spi}"


__all__ = ["LmaGuard", "PmipGuard", "Verdict", "OK", "RESYNC", "DEFAULT_MAX_OFFSET",
           "spiOf", "describeAuth", "addresses"]
