"""
The Twisted side of RFC 5847 heartbeats (L{netlmm.core.heartbeat}): the
timer that drives the core, sending through the role's Mobility Header
socket, logging and counting what the core finds, and the Restart Counter
kept in the role's state store.
"""

import time

from twisted.logger import Logger

from netlmm.core.effects import SendMH
from netlmm.core.heartbeat import (
    HeartbeatCore, PeerReachable, PeerRestarted, PeerState, PeerUnreachable,
    PeerUnsupported)

#: The state store key of the Restart Counter record; the NUL octet keeps it
#: apart from every MN identifier (an NAI) and home address (16 octets).
COUNTER_KEY = b"\x00netlmm:restart-counter"


def restartCounter(entries, now=None):
    """
    (counter, entries, stored): this node's Restart Counter from the state
    store C{entries} ((key, record) pairs as loaded), the entries without
    its record, and whether the counter came from the store.

    RFC 5847 3.3: the counter changes only when the node restarted and lost
    its PMIPv6 state. The state and the counter live in the same store: when
    the store brought the counter back, the state came back with it and the
    counter stays; when it did not (no store, a new or lost one), the state
    is new too and the counter is taken from the clock (milliseconds since
    1970 modulo 2**32), so that it differs from the values the node sent
    before (the same one comes back only after 49.7 days, to the
    millisecond).
    """
    counter = None
    kept = []
    for key, record in entries:
        if key == COUNTER_KEY:
            value = record.get("restartCounter") if isinstance(record, dict) else None
            if type(value) is int and 0 <= value <= 0xFFFFFFFF:
                counter = value
        else:
            kept.append((key, record))
    if counter is not None:
        return counter, kept, True
    return int((time.time() if now is None else now) * 1000) & 0xFFFFFFFF, kept, False


class Heartbeats:
    """
    Heartbeats of a role (PMIP client or LMA) with its peers.

    @param send: C{send(message, destination, port)} through the role's
        socket; C{port} is the source port of the message answered, None
        for a Request of ours (the role knows the peer's port).
    @param react: C{react(effect)} for what the role acts on
        (L{PeerRestarted}, L{PeerUnreachable}, L{PeerReachable},
        L{PeerUnsupported}), after it is logged and counted here.
    @param role: the role's name in log lines ("PMIP client", "LMA").
    """

    log = Logger()

    def __init__(self, reactor, core, send, react=None, role="netlmm"):
        self.reactor = reactor
        self.core = core
        self.send = send
        self.react = react
        self.role = role
        self._timer = None
        self.running = False

    @classmethod
    def fromConfig(cls, reactor, config, counter, send, react=None, role="netlmm"):
        """From a L{HeartbeatConfig} and this node's Restart Counter."""
        core = HeartbeatCore(counter, config.interval, config.missing, log=cls.log)
        return cls(reactor, core, send, react, role)

    def start(self, peers=()):
        """Watch C{peers} and tell them this node's Restart Counter (unsolicited)."""
        self.running = True
        now = self.reactor.seconds()
        effects = []
        for peer in peers:
            effects.extend(self.core.watch(peer, now))
        if self.core.interval:
            effects.extend(self.core.announce(now))
        self._dispatch(effects)

    def stop(self):
        self.running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def watch(self, peer):
        self._dispatch(self.core.watch(peer, self.reactor.seconds()))

    def unwatch(self, peer):
        self.core.unwatch(peer)

    def received(self, message, source, port=None):
        """
        A Heartbeat (or a Binding Error) from C{source} (an IPv6Address)
        and UDP C{port}, where the answer goes.
        """
        self._dispatch(self.core.receive(message, source, self.reactor.seconds()),
                       (source, port))

    def _fire(self):
        self._timer = None
        self._dispatch(self.core.handleTimer(self.reactor.seconds()))

    def _dispatch(self, effects, replyTo=(None, None)):
        for e in effects:
            if type(e) is SendMH:
                answer = e.message.response and e.destination == replyTo[0]
                self.send(e.message, e.destination, replyTo[1] if answer else None)
                continue
            self._logEffect(e)
            if self.react is not None:
                self.react(e)
        self._rearm()

    def _logEffect(self, e):
        kind = type(e)
        if kind is PeerUnreachable:
            if e.answeredBefore:
                self.log.warn("{role}: peer {peer} is unreachable: {missed} heartbeats "
                              "in a row unanswered (RFC 5847)", role=self.role,
                              peer=e.peer, missed=e.missed)
            else:
                self.log.warn("{role}: peer {peer} answered none of {missed} heartbeats: "
                              "unreachable, or it does not implement RFC 5847 (then "
                              "turn heartbeats off for it)", role=self.role, peer=e.peer,
                              missed=e.missed)
        elif kind is PeerReachable:
            self.log.info("{role}: peer {peer} answers heartbeats again", role=self.role,
                          peer=e.peer)
        elif kind is PeerRestarted:
            self.log.warn("{role}: peer {peer} restarted and lost its state (Restart "
                          "Counter {old} -> {new})", role=self.role, peer=e.peer,
                          old=e.old, new=e.new)
        elif kind is PeerUnsupported:
            self.log.info("{role}: peer {peer} does not implement RFC 5847 heartbeats "
                          "(Binding Error); not sending it any more", role=self.role,
                          peer=e.peer)

    def _rearm(self):
        when = self.core.nextTimer()
        if when is None or not self.running:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            return
        delay = max(0.0, when - self.reactor.seconds())
        if self._timer is not None and self._timer.active():
            self._timer.reset(delay)
        else:
            self._timer = self.reactor.callLater(delay, self._fire)

    def metricFamilies(self, prefix):
        """Heartbeat counters and peers by state, as C{prefix}_heartbeat_..."""
        from netlmm.metrics import counter, gauge, snake
        c = self.core.counters
        yield counter(f"{prefix}_heartbeat_requests_sent",
                      "RFC 5847 Heartbeat Requests sent", c["requestsSent"])
        yield counter(f"{prefix}_heartbeat_requests_answered",
                      "RFC 5847 Heartbeat Requests received and answered",
                      c["requestsAnswered"])
        yield counter(f"{prefix}_heartbeat_responses",
                      "Heartbeat Responses that answered the Request outstanding",
                      c["responses"])
        yield counter(f"{prefix}_heartbeat_peer_events",
                      "Peers found unreachable or restarted by heartbeats",
                      {snake(k): c[k] for k in ("unreachable", "restarts")}, "event")
        states = {s.value: 0 for s in PeerState}
        for p in self.core.peers.values():
            states[p.state.value] += 1
        yield gauge(f"{prefix}_heartbeat_peers", "Peers watched by heartbeats, by state",
                    states, "state")


class HeartbeatConfig:
    """
    A role's heartbeat settings: C{interval} seconds between Requests (0:
    send none; Requests from peers are answered anyway) and C{missing}
    Requests in a row unanswered before a peer is unreachable.
    """

    def __init__(self, interval=60.0, missing=3):
        self.interval = float(interval)
        self.missing = missing

    @classmethod
    def fromTable(cls, t):
        """
        From a config table (L{netlmm.config}) such as [lma.heartbeat]:
        interval (60, RFC 5847 HEARTBEAT_INTERVAL; 0 = off), missing (3,
        MISSING_HEARTBEATS_ALLOWED).
        """
        interval = t.number("interval", 60, minimum=0, maximum=3600)
        missing = t.number("missing", 3, minimum=1, maximum=100, integer=True)
        t.finish()
        return cls(interval, missing)
