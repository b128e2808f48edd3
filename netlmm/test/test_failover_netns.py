"""
An active/standby LMA pair in network namespaces (issue 12 item 3), as
shipped: two `twistd netlmm-lma` daemons, each in a namespace of its own
(machines "a" and "b") on one link with the PMIP client's ("c"), their
bindings in a real redis-server, the service address 2001:db8:f::1 on the
active's interface, the userspace data plane. Under load, the active is
killed with SIGKILL; the standby takes the lease and the address, loads the
bindings, puts their routes in its kernel and answers. Measured and checked:

- the time from the kill to the first PBU accepted by the standby (goal
  <= 3 s with the default 1 s lease), and until every route is in the
  standby's kernel;
- 0 acknowledged bindings lost: every mobile whose PBU was accepted, before
  or after the kill, is refreshed by the standby (status 0, no MN
  identifier needed: it knows the home), and its route is in the standby's
  kernel;
- the client did not change: same address, same port, no configuration.

The figures are printed (doc/performance.md quotes them); NETLMM_FAILOVER_MOBILES
sets the number of mobiles (300).
"""

import os
import select
import signal
import socket
import time
from ipaddress import IPv6Address

from twisted.trial.unittest import TestCase

from netlmm.lab.netns import Lab
from netlmm.lab.redis import MISSING, RedisServer
from netlmm.wire import mh

SERVICE = IPv6Address("2001:db8:f::1")
CLIENT = IPv6Address("2001:db8:f::100")
PORT = 5436

CONFIG = """
[lma]
listen = "[{service}]:{port}"
transport = "udp"
home_prefix = "2001:db8:1::/64"
allowed_clients = ["2001:db8:f::/64"]

[lma.pool]
first = "2001:db8:1::100"
last = "2001:db8:1::ffff"

[lma.dataplane]
kind = "userspace"
address = "{service}"

[state]
backend = "redis"
socket = "{socket}"
timeout = 1.0

[state.failover]
address = "{service}/64"
interface = "eth0"
lease = 1.0
"""


def pbu(seq, mnId=None, phoa="::"):
    options = [mh.HomeNetworkPrefix(phoa), mh.AlternateCareOfAddress("2001:db8:ff::1")]
    if mnId is not None:
        options.append(mh.MobileNodeIdentifier(mnId))
    return mh.BindingUpdate(seq, lifetime=1000, options=options)


class Client:
    """The PMIP client's side: a UDP socket in namespace c, blocking."""

    def __init__(self, lab):
        def make():
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.bind((str(CLIENT), 0))
            return s
        self.sock = lab.inNetns("c", make)
        self.sock.setblocking(False)
        #: (time, PBA) of every answer.
        self.answers = []

    def send(self, message):
        try:
            self.sock.sendto(mh.encodeMessage(message, CLIENT, SERVICE), (str(SERVICE), PORT))
        except OSError:
            # No route or neighbour for a moment while the address moves.
            pass

    def receive(self, timeout):
        ready, _, _ = select.select([self.sock], [], [], timeout)
        while ready:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            self.answers.append((time.monotonic(), mh.decodeMessage(data)))

    def close(self):
        self.sock.close()


class FailoverNetnsTests(TestCase):

    timeout = 180

    def setUp(self):
        if MISSING:
            from twisted.trial.unittest import SkipTest
            raise SkipTest(MISSING)
        self.lab = Lab(self)
        lab = self.lab
        for node in ("a", "b", "c"):
            lab.add(node)
        lab.bridge("c", "br0")
        lab.addr("c", "br0", f"{CLIENT}/64")
        for node in ("a", "b"):
            lab.plug(node, "c", bridge="br0", ifname="eth0")
            lab.addr(node, "eth0", f"2001:db8:f::{node}/64")
        import tempfile
        import shutil
        directory = tempfile.mkdtemp(prefix="netlmm-failover-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.redis = RedisServer(directory)
        self.addCleanup(self.redis.kill)
        self.redis.start()
        self.directory = directory
        self.config = os.path.join(directory, "lma.toml")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(service=SERVICE, port=PORT, socket=self.redis.socket))
        self.logs = {}

    def startLma(self, node):
        self.logs[node] = os.path.join(self.directory, f"lma-{node}.log")
        return self.lab.twistd(node, "lma", self.config, self.logs[node])

    def waitLog(self, node, text, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.logs[node]) as f:
                log = f.read()
            if text in log:
                return log
            time.sleep(0.05)
        self.fail(f"no {text!r} in lma-{node}'s log within {timeout} s:\n{log[-3000:]}")

    def test_killActiveUnderLoad(self):
        n = int(os.environ.get("NETLMM_FAILOVER_MOBILES", "300"))
        active = self.startLma("a")
        self.waitLog("a", "active (")
        self.startLma("b")
        self.waitLog("b", "standby;")
        client = Client(self.lab)
        self.addCleanup(client.close)

        # Attach n mobiles through a.
        for i in range(n):
            client.send(pbu(1, b"mn%d@example.net" % i))
            if i % 50 == 49:
                client.receive(0.05)
        deadline = time.monotonic() + 20
        while len(client.answers) < n and time.monotonic() < deadline:
            client.receive(0.2)
        homes = {}
        for _, a in client.answers:
            self.assertEqual(a.status, 0, "an attachment was refused")
            homes[a.option(mh.MobileNodeIdentifier).identifier] = a.option(
                mh.HomeNetworkPrefix).prefix
        self.assertEqual(len(homes), n)

        # Refreshes round-robin, about 500 PBUs/s; kill a after 1 s.
        mobiles = sorted(homes)
        sequence = {m: 1 for m in mobiles}
        acked = {}
        sentAt = {}
        start = time.monotonic()
        killedAt = None
        firstAfter = None
        k = 0
        client.answers = []
        while time.monotonic() - start < 15:
            m = mobiles[k % n]
            k += 1
            sequence[m] += 1
            client.send(pbu(sequence[m], phoa=homes[m]))
            sentAt[(homes[m], sequence[m])] = time.monotonic()
            client.receive(0.002)
            if killedAt is None and time.monotonic() - start > 1.0:
                os.kill(active.pid, signal.SIGKILL)
                killedAt = time.monotonic()
            if killedAt is not None and firstAfter is None:
                for at, a in client.answers:
                    # Answered by the standby: sent after the kill.
                    sent = sentAt.get((a.option(mh.HomeNetworkPrefix).prefix, a.sequence))
                    if a.status == 0 and sent is not None and sent > killedAt:
                        firstAfter = at
                        break
            if firstAfter is not None and time.monotonic() - firstAfter > 1.0:
                break
        client.receive(0.5)
        self.assertIsNotNone(firstAfter, "the standby accepted nothing within 14 s:\n"
                             + open(self.logs["b"]).read()[-3000:])
        for at, a in client.answers:
            if a.status == 0:
                acked[a.option(mh.HomeNetworkPrefix).prefix] = a.sequence
        refused = [a.status for _, a in client.answers if a.status != 0]
        log = self.waitLog("b", "active (")

        # 0 acknowledged bindings lost: the standby refreshes every mobile
        # (a PBU whose answer the burst lost is sent again, as a PMIP client
        # retransmits: the same sequence number).
        client.answers = []
        for m in mobiles:
            sequence[m] += 1
        final = {homes[m]: sequence[m] for m in mobiles}

        def last():
            # Late answers of the load phase may still arrive: only those
            # to this round count.
            return {a.option(mh.HomeNetworkPrefix).prefix: a.status
                    for _, a in client.answers
                    if final[a.option(mh.HomeNetworkPrefix).prefix] == a.sequence}
        pending = mobiles
        for _ in range(5):
            for i, m in enumerate(pending):
                client.send(pbu(sequence[m], phoa=homes[m]))
                if i % 50 == 49:
                    client.receive(0.01)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                client.receive(0.2)
                answered = last()
                pending = [m for m in mobiles if homes[m] not in answered]
                if not pending:
                    break
            if not pending:
                break
        statuses = list(last().values())
        self.assertEqual((len(statuses), set(statuses)), (n, {0}))
        # The routes go into the kernel in the background (the data plane's
        # netlink thread), one a binding.
        deadline = time.monotonic() + 20
        while True:
            routes = self.lab.exec("b", "ip", "-6", "route", "show", "table", "all").stdout
            missing = [h for h in homes.values() if f"{h} " not in routes]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        routed = time.monotonic()
        self.assertEqual(missing, [], open(self.logs["b"]).read()[-3000:])
        gap = firstAfter - killedAt
        took = log[log.index("took over in"):].split("\n")[0]
        print(f"\nfailover: kill -> first accepted PBU {gap * 1000:.0f} ms (lease 1 s; "
              f"standby {took}); {n} mobiles, {len(acked)} refreshed through the kill, "
              f"{len(refused)} refused {sorted(set(refused))}, 0 lost; every route in "
              f"the standby's kernel {routed - killedAt:.1f} s after the kill")
        # The goal is 3 s (about 1.2 s measured on an idle machine); a bound
        # twice as long keeps a machine shared with other suites from
        # failing the test, and still catches a takeover that waits for
        # something it should not.
        self.assertLess(gap, 6.0)

    def test_pausedActiveStepsDown(self):
        """
        The active frozen (SIGSTOP) past its lease: the standby takes over;
        woken up (SIGCONT), the old active finds the lease gone (or not
        renewed in time), removes the address and exits with status 1; the
        new active keeps serving every binding.
        """
        old = self.startLma("a")
        self.waitLog("a", "active (")
        self.startLma("b")
        self.waitLog("b", "standby;")
        client = Client(self.lab)
        self.addCleanup(client.close)
        for i in range(20):
            client.send(pbu(1, b"mn%d@example.net" % i))
        deadline = time.monotonic() + 20
        while len(client.answers) < 20 and time.monotonic() < deadline:
            client.receive(0.2)
        homes = {a.option(mh.MobileNodeIdentifier).identifier:
                 a.option(mh.HomeNetworkPrefix).prefix for _, a in client.answers}
        self.assertEqual(len(homes), 20)
        os.kill(old.pid, signal.SIGSTOP)
        self.addCleanup(lambda: old.poll() is None and os.kill(old.pid, signal.SIGCONT))
        self.waitLog("b", "active (")
        os.kill(old.pid, signal.SIGCONT)
        self.assertEqual(old.wait(20), 1)
        # Woken, it finds the lease held by the other, or (when its renewal's
        # timer fired first after the pause) not renewed in time: either way
        # it steps down.
        self.waitLog("a", "lost the lease")
        self.assertNotIn(str(SERVICE), self.lab.exec("a", "ip", "-6", "addr", "show",
                                                     "dev", "eth0").stdout)
        client.answers = []
        for m, home in homes.items():
            client.send(pbu(2, phoa=home))
        deadline = time.monotonic() + 20
        while len(client.answers) < 20 and time.monotonic() < deadline:
            client.receive(0.2)
        self.assertEqual([a.status for _, a in client.answers], [0] * 20)
