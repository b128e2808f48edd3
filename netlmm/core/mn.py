"""
The mobile node's side of Mobile IPv6 home registration (RFC 6275 section
11), sans-IO: what `netlmm mn` runs on a Linux host whose care-of address
changes as it moves between access networks (draft 4.1 step 7, 4.6).

L{MobileCore} is told the current care-of address (L{MobileCore.careOf},
None when the host has none) and the home agent's answers, and returns
effects: Binding Updates to send (L{SendToHomeAgent}: from the care-of
address with a Home Address option) and the tunnel to set up
(L{HomeTunnel}). One explicit state machine (L{TRANSITIONS}, driven by
L{MobileCore.step}):

    IDLE --move--> REGISTERING --accepted--> BOUND --refresh / move--> REGISTERING
    REGISTERING --refused--> REFUSED --retry / move--> REGISTERING
    any --home--> DEREGISTERING --accepted / give up--> HOME --move--> REGISTERING
    any --stop--> STOPPING --accepted / give up--> STOPPED

Every Binding Update, retransmissions included, has a new sequence number;
a BA matches any of those sent since the last move (RFC 6275 11.8). The
first registration waits InitialBindackTimeoutFirstReg (1.5 s) for its BA,
later ones INITIAL_BINDACK_TIMEOUT (1 s), doubling up to MAX_BINDACK_TIMEOUT
(32 s), then retransmitting at that pace. Status 135 resynchronises the
sequence number from the BA and sends again at once (RFC 6275 11.7.3).
"""

import enum
import random
from ipaddress import IPv6Address, IPv6Network

from netlmm.core.effects import HomeTunnel, InvalidInput, SendToHomeAgent
from netlmm.wire import mh
from netlmm.wire.mh import Status

INITIAL_BINDACK_TIMEOUT = 1.0
INITIAL_BINDACK_TIMEOUT_FIRST_REG = 1.5
MAX_BINDACK_TIMEOUT = 32.0
#: Attempts at deregistering before giving up (at stop or back home).
DEREGISTRATION_ATTEMPTS = 3
#: Immediate resends after status 135 before waiting for the timer.
RESYNC_LIMIT = 3


class MobileState(enum.Enum):
    """Where the home registration of the mobile stands."""

    __hash__ = object.__hash__

    IDLE = "IDLE"
    REGISTERING = "REGISTERING"
    BOUND = "BOUND"
    REFUSED = "REFUSED"
    DEREGISTERING = "DEREGISTERING"
    HOME = "HOME"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"


class MobileEvent(enum.Enum):
    """What can happen to it."""

    __hash__ = object.__hash__

    MOVE = "move"
    LOST = "lost"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    RETRANSMIT = "retransmit"
    REFRESH = "refresh"
    RETRY = "retry"
    HOME = "home"
    STOP = "stop"
    GIVE_UP = "give up"


S, E = MobileState, MobileEvent

#: (state, event) -> next state.
TRANSITIONS = {
    (S.IDLE, E.MOVE): S.REGISTERING,
    (S.IDLE, E.LOST): S.IDLE,
    (S.IDLE, E.HOME): S.HOME,
    (S.IDLE, E.STOP): S.STOPPED,
    (S.REGISTERING, E.MOVE): S.REGISTERING,
    (S.REGISTERING, E.RETRANSMIT): S.REGISTERING,
    (S.REGISTERING, E.ACCEPTED): S.BOUND,
    (S.REGISTERING, E.REFUSED): S.REFUSED,
    (S.REGISTERING, E.LOST): S.IDLE,
    (S.REGISTERING, E.HOME): S.DEREGISTERING,
    (S.REGISTERING, E.STOP): S.STOPPING,
    (S.BOUND, E.REFRESH): S.REGISTERING,
    (S.BOUND, E.MOVE): S.REGISTERING,
    (S.BOUND, E.LOST): S.IDLE,
    (S.BOUND, E.HOME): S.DEREGISTERING,
    (S.BOUND, E.STOP): S.STOPPING,
    (S.REFUSED, E.RETRY): S.REGISTERING,
    (S.REFUSED, E.MOVE): S.REGISTERING,
    (S.REFUSED, E.LOST): S.IDLE,
    (S.REFUSED, E.HOME): S.HOME,
    (S.REFUSED, E.STOP): S.STOPPED,
    (S.DEREGISTERING, E.RETRANSMIT): S.DEREGISTERING,
    (S.DEREGISTERING, E.ACCEPTED): S.HOME,
    (S.DEREGISTERING, E.REFUSED): S.HOME,
    (S.DEREGISTERING, E.GIVE_UP): S.HOME,
    (S.DEREGISTERING, E.MOVE): S.REGISTERING,
    (S.DEREGISTERING, E.LOST): S.HOME,
    (S.DEREGISTERING, E.STOP): S.STOPPED,
    (S.HOME, E.MOVE): S.REGISTERING,
    (S.HOME, E.LOST): S.HOME,
    (S.HOME, E.HOME): S.HOME,
    (S.HOME, E.STOP): S.STOPPED,
    (S.STOPPING, E.RETRANSMIT): S.STOPPING,
    (S.STOPPING, E.ACCEPTED): S.STOPPED,
    (S.STOPPING, E.REFUSED): S.STOPPED,
    (S.STOPPING, E.GIVE_UP): S.STOPPED,
    (S.STOPPING, E.MOVE): S.STOPPING,
    (S.STOPPING, E.LOST): S.STOPPED,
    (S.STOPPING, E.STOP): S.STOPPING,
}


class MobileCore:
    """
    One home registration: mobile C{mnId} with home address C{home} at the
    home agent C{homeAgent}.

    @param lifetime: the binding lifetime asked for, seconds (4..262140).
    @param homePrefix: the home network; a care-of address inside it means
        the mobile is at home (it deregisters). None: never at home.
    @param sequence: the first sequence number (default: random).
    """

    def __init__(self, mnId, home, homeAgent, lifetime=300, homePrefix=None,
                 sequence=None, log=None):
        self.mnId = mnId
        self.home = IPv6Address(home)
        self.homeAgent = IPv6Address(homeAgent)
        if not 4 <= lifetime <= mh.MAX_LIFETIME_UNITS * mh.LIFETIME_UNIT:
            raise ValueError(f"lifetime must be 4..262140 seconds, not {lifetime}")
        self.lifetime = lifetime
        self.homePrefix = None if homePrefix is None else IPv6Network(homePrefix)
        self.sequence = random.randrange(0x10000) if sequence is None else sequence
        self._log = log
        self.state = S.IDLE
        #: The care-of address registered or being registered, or None.
        self.current = None
        #: The care-of address the home agent accepted last, or None.
        self.bound = None
        #: When the binding the home agent granted runs out.
        self.expiry = None
        self._sent = set()
        self._timeout = INITIAL_BINDACK_TIMEOUT
        self._attempts = 0
        self._resyncs = 0
        self._deadline = None
        self._timerEvent = None
        self._tunnel = None
        self._fromHome = False
        #: Times of the last Binding Update for a new care-of address and of
        #: its acceptance, for measuring handoffs.
        self.movedAt = self.acceptedAt = None
        self.counters = {"bu": 0, "retransmissions": 0, "accepted": 0, "refused": 0,
                         "stale": 0, "resyncs": 0}

    # ------------------------------------------------------------ machinery

    def step(self, event):
        """
        Move to the state L{TRANSITIONS} gives for C{event}; raises
        L{InvalidInput} (changing nothing) when there is none.
        """
        state = TRANSITIONS.get((self.state, event))
        if state is None:
            raise InvalidInput(event.value, self.state.value)
        self.state = state
        return state

    def nextTimer(self):
        """When L{handleTimer} must next run, or None."""
        return self._deadline

    def _arm(self, when, event):
        self._deadline, self._timerEvent = when, event

    def _disarm(self):
        self._deadline = self._timerEvent = None

    # ------------------------------------------------------------ inputs

    def careOf(self, address, now):
        """
        The host's care-of address is now C{address} (None: it has none).
        Registers a new one at once; one inside the home prefix means the
        mobile is home, and deregisters.
        """
        address = None if address is None else IPv6Address(address)
        if address == self.current and self.state is not S.HOME:
            return []
        if address is None:
            if self.state in (S.STOPPED, S.STOPPING) and self.current is None:
                return []
            self.step(E.LOST)
            self.current = None
            if self.state is S.STOPPED:
                return self._stopped()
            if self.state is S.IDLE:
                self._disarm()
            return []
        if self.state in (S.STOPPING, S.STOPPED):
            self.current = address
            return []
        if self.homePrefix is not None and address in self.homePrefix:
            if self.state in (S.HOME, S.DEREGISTERING):
                return []
            wasBound = self.state in (S.BOUND, S.REGISTERING)
            self.step(E.HOME)
            self.current = None
            if not wasBound:
                self._disarm()
                return self._tunnelTo(None)
            return self._startDeregistration(now, fromHome=True)
        self.step(E.MOVE)
        self.current = address
        self.movedAt = now
        self._sent.clear()
        self._attempts = 0
        self._resyncs = 0
        first = self.bound is None
        self._timeout = INITIAL_BINDACK_TIMEOUT_FIRST_REG if first else INITIAL_BINDACK_TIMEOUT
        return self._tunnelTo(address) + self._send(now, self.lifetime)

    def receive(self, message, source, now):
        """
        A Mobility Header message from C{source}, already authenticated
        (RFC 4285) where security is on.
        """
        if type(message) is mh.BindingRefreshRequest:
            # RFC 6275 11.7.4: the home agent asks for a refresh now.
            if IPv6Address(source) != self.homeAgent or self.state is not S.BOUND:
                self.counters["stale"] += 1
                return []
            self._disarm()
            return self._refresh(now)
        if type(message) is not mh.BindingAcknowledgement:
            return []
        status = message.status
        waiting = self.state in (S.REGISTERING, S.DEREGISTERING, S.STOPPING)
        if IPv6Address(source) != self.homeAgent or not waiting or (
                message.sequence not in self._sent
                and status != Status.SEQUENCE_OUT_OF_WINDOW):
            self.counters["stale"] += 1
            return []
        if status == Status.SEQUENCE_OUT_OF_WINDOW:
            # RFC 6275 11.7.3: the BA carries the last number the home agent
            # accepted (not one sent here): go on after it.
            self.counters["resyncs"] += 1
            self.sequence = message.sequence
            self._sent.clear()
            if self._resyncs < RESYNC_LIMIT:
                self._resyncs += 1
                return self._send(now, self._askedLifetime())
            return []
        self._sent.clear()
        if status >= 128:
            self.counters["refused"] += 1
            self._say("home agent refused BU seq {seq}: {status}", seq=message.sequence,
                      status=Status.name(status))
            self.step(E.REFUSED)
            if self.state is S.REFUSED:
                self._arm(now + MAX_BINDACK_TIMEOUT, E.RETRY)
                return []
            return self._finished()
        self.counters["accepted"] += 1
        self.step(E.ACCEPTED)
        if self.state is S.BOUND:
            self.bound = self.current
            self.acceptedAt = now
            granted = message.lifetimeSeconds
            self.expiry = now + granted
            advice = message.option(mh.BindingRefreshAdvice)
            refresh = granted * 3 / 4
            if advice is not None and 0 < advice.interval * mh.LIFETIME_UNIT < refresh:
                refresh = advice.interval * mh.LIFETIME_UNIT
            self._arm(now + max(1.0, refresh), E.REFRESH)
            self._debug("bound {home} -> {careOf} for {lifetime} s", home=self.home,
                        careOf=self.current, lifetime=granted)
            return []
        return self._finished()

    def resend(self, now):
        """Send the pending Binding Update again at once (after a clock resync)."""
        if self.state in (S.REGISTERING, S.DEREGISTERING, S.STOPPING):
            return self._send(now, self._askedLifetime())
        return []

    def stop(self, now):
        """Deregister (when registered) and take the tunnel down."""
        if self.state in (S.STOPPED, S.STOPPING):
            return []
        registered = self.state in (S.BOUND, S.REGISTERING) and self.current is not None
        self.step(E.STOP)
        if self.state is S.STOPPED or not registered:
            self.state = S.STOPPED
            return self._stopped()
        return self._startDeregistration(now, fromHome=False)

    def handleTimer(self, now):
        """Retransmit, refresh or retry when it is time."""
        if self._deadline is None or now < self._deadline:
            return []
        event = self._timerEvent
        self._disarm()
        if event is E.RETRANSMIT:
            if self.state in (S.DEREGISTERING, S.STOPPING) and \
                    self._attempts >= DEREGISTRATION_ATTEMPTS:
                self.step(E.GIVE_UP)
                return self._finished()
            self.step(E.RETRANSMIT)
            self.counters["retransmissions"] += 1
            self._timeout = min(self._timeout * 2, MAX_BINDACK_TIMEOUT)
            return self._send(now, self._askedLifetime())
        if event is E.REFRESH:
            return self._refresh(now)
        if event is E.RETRY:
            self.step(E.RETRY)
            self._timeout = INITIAL_BINDACK_TIMEOUT
            self._attempts = 0
            return self._send(now, self.lifetime)
        return []

    # ------------------------------------------------------------ internals

    @property
    def done(self):
        """True once stopped: nothing more will be sent."""
        return self.state is S.STOPPED

    def _askedLifetime(self):
        return 0 if self.state in (S.DEREGISTERING, S.STOPPING) else self.lifetime

    def _refresh(self, now):
        self.step(E.REFRESH)
        self._timeout = INITIAL_BINDACK_TIMEOUT
        self._attempts = 0
        return self._send(now, self.lifetime)

    def _startDeregistration(self, now, fromHome):
        self._sent.clear()
        self._attempts = 0
        self._resyncs = 0
        self._timeout = INITIAL_BINDACK_TIMEOUT
        self._fromHome = fromHome
        return self._send(now, 0)

    def _send(self, now, lifetime):
        self.sequence = (self.sequence + 1) & 0xFFFF
        self._sent.add(self.sequence)
        self._attempts += 1
        self.counters["bu"] += 1
        bu = mh.BindingUpdate(self.sequence, mh.BU_A | mh.BU_H,
                              lifetime // mh.LIFETIME_UNIT,
                              (mh.MobileNodeIdentifier(self.mnId),))
        self._arm(now + self._timeout, E.RETRANSMIT)
        if self.state is S.DEREGISTERING and self._fromHome:
            # RFC 6275 11.5.5: from the home address, without the option.
            return [SendToHomeAgent(bu, self.homeAgent, None, self.home)]
        careOf = self.current if self.current is not None else self.bound
        return [SendToHomeAgent(bu, self.homeAgent, careOf, self.home)]

    def _tunnelTo(self, careOf):
        if careOf == self._tunnel:
            return []
        self._tunnel = careOf
        return [HomeTunnel(self.home, self.homeAgent, careOf)]

    def _finished(self):
        """A deregistration ended (answered or given up)."""
        self._disarm()
        self.bound = self.expiry = None
        if self.state is S.STOPPED:
            return self._stopped()
        return self._tunnelTo(None)

    def _stopped(self):
        self._disarm()
        return self._tunnelTo(None)

    def _say(self, fmt, **kw):
        if self._log is not None:
            self._log.warn(fmt, **kw)

    def _debug(self, fmt, **kw):
        if self._log is not None:
            self._log.debug(fmt, **kw)
