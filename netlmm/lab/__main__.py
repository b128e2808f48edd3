"""
`python -m netlmm.lab`: what this kernel can do for the tests, and running
tests under kernel-lab.

    python -m netlmm.lab probe                      # capability: present / what is missing
    python -m netlmm.lab kernel-lab [--timeout S] TEST...   # trial TEST... under kernel-lab
"""

import argparse
import os
import sys

from netlmm.lab import kernel


def main(argv=None):
    """Dispatch the sub-commands; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m netlmm.lab",
                                     description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("probe", help="probe this kernel's capabilities (as root: all of them)")
    run = sub.add_parser("kernel-lab", help="run trial tests under kernel-lab (Debian's "
                         "kernel in qemu), one run at a time on this machine; this "
                         "Python's venv must be in the current directory or under /tmp")
    run.add_argument("--timeout", type=int, default=None,
                     help="seconds (default 10 minutes plus 5 a test, at most 70)")
    run.add_argument("tests", nargs="+", help="trial test names")
    args = parser.parse_args(argv)
    if args.command == "probe":
        for name in sorted(kernel.CAPABILITIES):
            reason = kernel.missing(name)
            print(f"{name:16s} {'yes' if reason is None else 'NO: ' + reason}")
        return 0
    try:
        command = kernel.kernelLabCommand(args.tests, args.timeout)
    except RuntimeError as e:
        print(f"python -m netlmm.lab: {e}", file=sys.stderr)
        return 125
    # One kernel-lab run at a time on this machine; the lock passes to kernel-lab.
    kernel.holdKernelLabLock(say=lambda text: print(text, file=sys.stderr, flush=True))
    sys.stdout.flush()
    os.execv(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
