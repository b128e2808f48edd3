"""Tests for netlmm.dataplane.memory, the data plane that only remembers."""

from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from netlmm.dataplane.memory import MemoryDataPlane

MAG = IPv6Address("2001:db8:ff::1")


class MemoryDataPlaneTests(SynchronousTestCase):

    def test_routesKeptChangesBounded(self):
        """
        Every route stays as long as it is not removed; of the changes only
        the last CHANGES_KEPT are kept (the shipped LMA runs on this data
        plane: one tuple per change, forever, grew it without bound).
        """
        dp = MemoryDataPlane()
        homes = [IPv6Address("2001:db8:1::1") + i for i in range(dp.CHANGES_KEPT + 5)]
        for home in homes:
            dp.addRoute(home, MAG)
        dp.removeRoute(homes[0], MAG)
        self.assertEqual(len(dp.routes), len(homes) - 1)
        self.assertEqual(len(dp.changes), dp.CHANGES_KEPT)
        self.assertEqual(dp.changes[-1], ("remove", homes[0], MAG))
        self.assertEqual(dp.changes[0], ("add", homes[6], MAG))
