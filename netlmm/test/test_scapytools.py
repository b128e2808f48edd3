"""A broken scapy fails the cross-checks; it does not read as a skip (issue 11)."""

import os
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase


class BrokenScapyTests(SynchronousTestCase):

    def test_brokenScapyFails(self):
        """
        With a scapy that is installed but raises on import, trial reports
        the cross-checking module as an error, not as skipped tests.
        """
        fake = Path(self.mktemp()).absolute()
        (fake / "scapy" / "layers").mkdir(parents=True)
        (fake / "scapy" / "__init__.py").write_text("")
        (fake / "scapy" / "layers" / "__init__.py").write_text(
            "raise RuntimeError('scapy is broken here')\n")
        import netlmm
        source = str(Path(netlmm.__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), source]))
        done = subprocess.run(
            [sys.executable, "-m", "twisted.trial", "--temp-directory",
             str(fake.parent / "_trial"), "netlmm.test.test_wire_dhcp6"],
            capture_output=True, text=True, timeout=120, env=env, cwd=str(fake.parent))
        self.assertNotEqual(done.returncode, 0, done.stdout)
        self.assertIn("scapy is broken here", done.stdout)
        self.assertIn("FAILED (errors=1)", done.stdout)
        self.assertNotIn("skips=", done.stdout)
