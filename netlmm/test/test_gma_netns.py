"""
The GMA and `netlmm mn` on real hosts in network namespaces (root, and a
kernel with mip6, ip6tnl and seg6: kernel-lab on the build machines): a
mobile keeps a TCP connection to its home address while its care-of address
changes between two access networks with different prefixes; a ping goes
through the GMA tunnel; the Binding Update on the wire has its Home Address
option and the Binding Acknowledgement its type 2 routing header (tshark);
stopping the mobile deregisters it.
"""

import os

from twisted.trial.unittest import TestCase

from netlmm.lab import timeScale
from netlmm.lab.mip6 import GMA_ADDRESS, HOME_ADDRESS, ROUTERS, MobileIpv6Lab
from netlmm.lab.probes import ECHO_CLIENT, ECHO_SERVER, command, echoes
from netlmm.lab.wait import waitFor


class GmaNetnsTests(TestCase):

    timeout = 300 * timeScale()

    def test_tcpSurvivesCareOfChanges(self):
        lab = MobileIpv6Lab(self, directory=self.mktemp())
        os.makedirs(lab.directory)
        lab.build()
        lab.startGma()
        lab.moveTo("ar1")
        lab.startMobile()
        lab.waitBound("ar1", timeout=60)

        # A ping from the correspondent to the home address, through the GMA.
        lab.exec("cn", "ping", "-6", "-c", "3", "-i", "0.2", "-W", "5", HOME_ADDRESS,
                 timeout=60)

        server = lab.start("mn", command(ECHO_SERVER, HOME_ADDRESS, 7000),
                           log=lab.path("server.log"))
        lab.waitLog(lab.path("server.log"), "listening", server, timeout=60)
        clientLog = lab.path("client.log")
        client = lab.start("cn", command(ECHO_CLIENT, HOME_ADDRESS, 7000, 0.05),
                           log=clientLog)
        lab.waitLog(clientLog, "connected", client, timeout=60)
        capture = lab.capture("gma", "g2", lab.path("g2.pcap"), filter="ip6 and not icmp6")

        moves = []
        for router, count in (("ar2", 1), ("ar1", 2)):
            added = lab.moveTo(router)
            lab.waitBound(router, count=count, timeout=60)

            def after():
                return [t for t, _ in echoes(clientLog)[0] if t > added]
            waitFor(lambda: len(after()) > 5, f"echoes after the move to {router}",
                    timeout=60, alive=lambda: client.poll() is None)
            moves.append((router, after()[0] - added))
        rows, error = echoes(clientLog)
        self.assertIsNone(error)
        self.assertEqual([n for _, n in rows], list(range(1, len(rows) + 1)),
                         "echoes lost or out of order: the connection did not survive")
        self.assertIsNone(client.poll(), "the TCP client exited")

        capture.stop()
        fields = capture.fields("mipv6", "ipv6.src", "ipv6.dst",
                                "ipv6.opt.mipv6.home_address",
                                "ipv6.routing.mipv6.home_address", "mip6.mhtype",
                                "mip6.ba.status", "mip6.auth.mobility_spi")
        bus = [f for f in fields if f[4] == "5"]
        bas = [f for f in fields if f[4] == "6"]
        careOf2 = ROUTERS["ar2"][1]
        self.assertIn((careOf2, GMA_ADDRESS, HOME_ADDRESS, "", "5", "", "4000"), bus)
        self.assertIn((GMA_ADDRESS, careOf2, "", HOME_ADDRESS, "6", "0", "4000"), bas)

        # Stopping the mobile deregisters: the GMA's route to the home goes.
        lab.stop(lab.mn)
        waitFor(lambda: HOME_ADDRESS not in lab.exec("gma", "ip", "-6", "route").stdout,
                "the GMA's route to the home address to go", timeout=30)
        for router, gap in moves:
            print(f"\n{router}: first echo {gap * 1000:.0f} ms after the care-of address")
        self.assertTrue(all(gap < 10 * timeScale() for _, gap in moves), moves)
