"""
The lab: everything netlmm's tests, demos and benchmarks use to run the
code against real kernels and real peers, and the fakes to run it without.

- L{kernel}: what this kernel can do (L{kernel.require} skips a test that
  needs what it lacks and records it for `./dev test`, which runs it under
  kernel-lab), L{kernel.timeScale} for timing bounds there.
- L{netns}: L{Lab}, the namespaces, veth links, bridges and processes of one
  test, removed also when the test fails.
- L{capture}: tcpdump in a namespace, decoded with tshark.
- L{domain}: a whole local mobility domain with the real daemons.
- L{fakes}: in-memory stand-ins for the kernel (netlink, TUN, raw sockets)
  and for a MAG, for tests without root.

Run `python -m netlmm.lab probe` to see what this kernel has.
"""

from netlmm.lab.capture import Capture
from netlmm.lab.kernel import require, timeScale
from netlmm.lab.netns import CommandFailed, Lab, Mobile, eui64

__all__ = ["Capture", "CommandFailed", "Lab", "Mobile", "eui64", "require", "timeScale"]
