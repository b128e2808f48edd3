"""
The 'hostapd' attachment detector: a MAG on a Wi-Fi access point follows a
real hostapd through its control interface, so it knows of a mobile at
association time, before the mobile sends any IPv6 packet.

hostapd's control interface is a UNIX datagram socket, one per radio
(C{ctrl_interface} directory + interface name, e.g. /run/hostapd/wlan0). A
client binds a socket of its own, sends C{ATTACH} and then receives events
as datagrams C{"<level>EVENT args"}; commands (C{PING}, C{STA-FIRST},
C{STA-NEXT mac}) are answered in order on the same socket. The events used
here:

    AP-STA-CONNECTED aa:bb:cc:dd:ee:ff      a station (re)associated: attach
    AP-STA-DISCONNECTED aa:bb:cc:dd:ee:ff   it left (or timed out): detach
    BSS-TM-RESP aa:bb:.. status_code=0 .. target_bssid=11:22:..
                                            it accepted an 802.11v BSS
                                            transition to another AP: the
                                            MAG may prepare the handover

A station that roams away without saying so (802.11 reassociation to
another AP sends nothing to the old one) is detached by hostapd's inactivity
timer (ap_max_inactivity), or earlier through the PMIP client (the LMA moved
the binding) or a context transfer request from the new MAG.

The detector pings hostapd every C{ping_interval} seconds; when hostapd goes
away (no answer, the socket refuses) it reconnects every C{retry_interval}
seconds, and once back it lists the associated stations: hostapd lost them
when it restarted, so those the MAG had are detached and those it has now
attached. The MN identifier is the station's MAC as text,
'aa:bb:cc:dd:ee:ff', as the 'rs' and 'link' detectors name mobiles.

The client socket is bound to an abstract UNIX address (no file to clean
up), so the MAG must run in hostapd's network namespace, as on one host.
"""

import errno
import itertools
import os
import re
import socket

from twisted.logger import Logger
from zope.interface import implementer

from netlmm.access import AttachmentEvent
from netlmm.daemon import StartupError
from netlmm.interfaces import IAttachmentDetector


_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_EVENT = re.compile(r"^<(\d)>(\S+)\s*(.*)$")
_counter = itertools.count(1)


def _mac(text):
    """A MAC in hostapd's text form, lower-cased, or None."""
    text = text.strip().lower()
    return text if _MAC.match(text) else None


def parseArguments(text):
    """The 'key=value' words of an event line as a dict (other words under None)."""
    out = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if sep:
            out[key] = value
        else:
            out.setdefault(None, []).append(word)
    return out


@implementer(IAttachmentDetector)
class HostapdDetector:
    """
    Attachments from a hostapd control socket at C{path}. C{access}, the
    MAG's access link when it advertises, sends a station an RA as soon as it
    associates. C{transition}, when set, is called as
    C{transition(mnId, targetBssid)} when a station accepts a BSS transition
    (802.11v) to another AP: a handover is coming.
    """

    name = "hostapd"
    log = Logger()

    def __init__(self, reactor, path, access=None, pingInterval=1.0, retryInterval=0.5,
                 startTimeout=2.0):
        self.reactor = reactor
        self.path = path
        self.access = access
        self.pingInterval = pingInterval
        self.retryInterval = retryInterval
        self.startTimeout = startTimeout
        self.mag = None
        self.transition = None
        #: MN identifier -> MAC text of the stations attached through this detector.
        self.stations = {}
        self.socket = None
        self.connected = False
        self.counters = dict(connected=0, disconnected=0, reconnects=0, ignored=0)
        self._reader = None
        self._pending = []
        self._timer = None
        self._unanswered = 0
        self._listing = None

    @classmethod
    def fromConfig(cls, table, reactor, access=None, **context):
        """
        Options: C{control} (required), the path of hostapd's control socket
        (its ctrl_interface directory and the radio's interface name, e.g.
        '/run/hostapd/wlan0'); C{ping_interval} (1 s) and C{retry_interval}
        (0.5 s).
        """
        path = table.path("control", required=True) if hasattr(table, "path") \
            else table.string("control", required=True)
        ping = table.number("ping_interval", 1.0, minimum=0.05, maximum=60)
        retry = table.number("retry_interval", 0.5, minimum=0.05, maximum=60)
        table.finish()
        return cls(reactor, path, access=access, pingInterval=ping, retryInterval=retry)

    # ------------------------------------------------------------ lifecycle

    def start(self, mag):
        """
        Connect to hostapd and ATTACH; fails with a L{StartupError} naming
        the socket when hostapd is not there or does not answer.
        """
        from twisted.internet.defer import Deferred
        self.mag = mag
        if self.access is not None:
            self.access.start()
        try:
            self._open()
        except OSError as e:
            self._close()
            if self.access is not None:
                self.access.stop()
            raise StartupError(self._unreachable(e)) from None
        started = Deferred()

        def attached(reply):
            if started.called:
                return
            if reply != "OK":
                started.errback(StartupError(
                    f"hostapd control socket {self.path}: ATTACH answered {reply!r}"))
                return
            self._onAttached()
            self.log.info("hostapd detector: following {path}", path=self.path)
            started.callback(None)

        def timedOut():
            if not started.called:
                self._close()
                started.errback(StartupError(
                    f"hostapd control socket {self.path}: no answer to ATTACH within "
                    f"{self.startTimeout:g} s; is hostapd running?"))
        self._request("ATTACH", attached)
        self.reactor.callLater(self.startTimeout, timedOut)
        return started

    def stop(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.socket is not None and self.connected:
            try:
                self.socket.send(b"DETACH")
            except OSError:
                pass
        self._close()
        if self.access is not None:
            self.access.stop()
        self.stations = {}
        self.mag = None

    def _unreachable(self, error):
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            return (f"hostapd control socket {self.path}: no such socket; is hostapd "
                    "running, with ctrl_interface naming that directory?")
        reason = (error.strerror or str(error)).lower()
        return f"hostapd control socket {self.path}: {reason}"

    def _open(self):
        from netlmm.access.system import SocketReader
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.bind(f"\0netlmm-hostapd-{os.getpid()}-{next(_counter)}")
            s.connect(self.path)
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self.socket = s
        self._reader = SocketReader(self.reactor, s, self._datagram, f"hostapd({self.path})")
        self._reader.startReading()

    def _close(self):
        self.connected = False
        self._pending = []
        self._listing = None
        if self._reader is not None:
            self._reader.stop()
        self._reader = None
        self.socket = None

    # ------------------------------------------------------------ talking

    def _request(self, command, answered):
        """Send C{command}; C{answered(reply text)} is called with hostapd's reply."""
        self._pending.append(answered)
        try:
            self.socket.send(command.encode("ascii"))
        except OSError as e:
            self._pending.remove(answered)
            self._lost(f"{command} failed: {(e.strerror or str(e)).lower()}")
            return False
        return True

    def _datagram(self, data, ancillary, address):
        text = data.decode("utf-8", "replace")
        match = _EVENT.match(text)
        if match is not None:
            self._event(match.group(2), match.group(3).strip())
            return
        if not self._pending:
            self.counters["ignored"] += 1
            return
        self._pending.pop(0)(text.strip() if text != "\n" else "")

    def _onAttached(self):
        self.connected = True
        self._unanswered = 0
        self._schedule(self.pingInterval, self._ping)
        self._list()

    def _schedule(self, delay, f):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.reactor.callLater(delay, f)

    def _ping(self):
        self._timer = None
        if self._unanswered >= 2:
            self._lost(f"no answer to PING for {2 * self.pingInterval:g} s")
            return
        self._unanswered += 1

        def pong(reply):
            self._unanswered = 0
        if self._request("PING", pong):
            self._schedule(self.pingInterval, self._ping)

    def _lost(self, why):
        if not self.connected and self.socket is None:
            return
        self.log.warn("hostapd detector: lost {path} ({why}); reconnecting every {retry:g} s",
                      path=self.path, why=why, retry=self.retryInterval)
        self._close()
        self._schedule(self.retryInterval, self._reconnect)

    def _reconnect(self):
        self._timer = None
        if self.mag is None:
            return
        try:
            self._open()
        except OSError:
            self._schedule(self.retryInterval, self._reconnect)
            return

        def attached(reply):
            if reply == "OK":
                self.counters["reconnects"] += 1
                self.log.info("hostapd detector: {path} is back", path=self.path)
                self._onAttached()
        if self._request("ATTACH", attached):
            # No answer (a socket file left by a dead hostapd): try again later.
            self._schedule(max(self.retryInterval, 1.0), self._attachTimedOut)

    def _attachTimedOut(self):
        self._timer = None
        if not self.connected:
            self._close()
            self._schedule(self.retryInterval, self._reconnect)

    def _list(self):
        """Ask for every associated station (after ATTACH, hostapd may have restarted)."""
        self._listing = set()

        def got(reply):
            if self._listing is None:
                return
            mac = _mac(reply.split("\n", 1)[0]) if reply else None
            if mac is None or mac in self._listing:
                self._listed()
                return
            self._listing.add(mac)
            self._request(f"STA-NEXT {mac}", got)
        self._request("STA-FIRST", got)

    def _listed(self):
        present, self._listing = self._listing, None
        for mnId, mac in list(self.stations.items()):
            if mac not in present:
                self.log.info("hostapd detector: {mac} is no longer associated", mac=mac)
                self._detach(mac)
        for mac in sorted(present):
            if mac.encode("ascii") not in self.stations:
                self._attach(mac, "is associated")

    # ------------------------------------------------------------ events

    def _event(self, name, args):
        if name in ("AP-STA-CONNECTED", "AP-STA-DISCONNECTED"):
            mac = _mac(args.split()[0]) if args else None
            if mac is None:
                self.counters["ignored"] += 1
                self.log.warn("hostapd detector: {event} without a MAC: {args!r}; ignored",
                              event=name, args=args[:60])
            elif name == "AP-STA-CONNECTED":
                self.counters["connected"] += 1
                self._attach(mac, "associated")
            else:
                self.counters["disconnected"] += 1
                self._detach(mac)
        elif name == "BSS-TM-RESP":
            words = args.split()
            mac = _mac(words[0]) if words else None
            values = parseArguments(args)
            target = _mac(values.get("target_bssid", ""))
            if mac is not None and values.get("status_code") == "0" and target is not None:
                self.log.info("hostapd detector: {mac} accepts a transition to {target}",
                              mac=mac, target=target)
                if self.transition is not None:
                    self.transition(mac.encode("ascii"), target)
        elif name == "CTRL-EVENT-TERMINATING":
            self._lost("hostapd is terminating")

    def _attach(self, mac, how):
        mnId = mac.encode("ascii")
        again = mnId in self.stations
        self.stations[mnId] = mac
        self.log.info("hostapd detector: {mac} {how}", mac=mac, how=how)
        if self.access is not None:
            self.access.newPort()
        if self.mag is not None:
            if again:
                # Reassociated without our seeing it leave: a new attachment.
                self.mag.detached(mnId)
            self.mag.attached(AttachmentEvent(mnId, linkLayer=mac))

    def _detach(self, mac):
        mnId = mac.encode("ascii")
        if self.stations.pop(mnId, None) is None:
            return
        self.log.info("hostapd detector: {mac} left", mac=mac)
        if self.mag is not None:
            self.mag.detached(mnId)
