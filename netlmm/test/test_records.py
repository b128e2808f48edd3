"""Tests for netlmm.core.records: reading back the fields of kept records."""

from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from netlmm.core import records


class AddressTests(SynchronousTestCase):
    """records.address reads what the stores write, and refuses the rest."""

    def test_fullForm(self):
        """The stores' full form (eight groups, no zero padding) reads back exactly."""
        for text in ("2001:db8:1:0:0:0:2:ab1f", "0:0:0:0:0:0:0:1",
                     "FFFF:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "fe80:0:0:0:0:0:0:a"):
            self.assertEqual(records.address(text), IPv6Address(text))
            self.assertIs(type(records.address(text)), IPv6Address)

    def test_otherForms(self):
        """Compressed text (records of earlier releases) and address objects pass."""
        self.assertEqual(records.address("2001:db8::1"), IPv6Address("2001:db8::1"))
        a = IPv6Address("2001:db8::2")
        self.assertIs(records.address(a), a)

    def test_refused(self):
        for value in ("1:2:3:4:5:6:7:g", "1:2:3:4:5:6:7:12345", "1:2:3:4:5:6:7",
                      "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:+8", "1:2:3:4:5:6:7:8\n",
                      "1_0:2:3:4:5:6:7:8", "", 17, None):
            e = self.assertRaises(ValueError, records.address, value)
            self.assertEqual(str(e), f"{value!r} is not an IPv6 address")
