"""The `netlmm` command: `netlmm demo` and friends."""

import argparse
import sys


def main(argv=None):
    """Dispatch the sub-commands."""
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["mn"]:
        # Its options and --help are the daemon's own (netlmm.tap.mn).
        from netlmm.tap import mn
        return mn.main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="netlmm",
        description="Network-based localized mobility management "
                    "(draft-singh-netlmm-protocol-02). The daemons run under twistd: "
                    "twistd -n netlmm-lma|netlmm-pmip|netlmm-mag|netlmm-gma --config FILE.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run an LMA, a PMIP client and two MAGs on "
                          "loopback and move a simulated mobile between them")
    demo.add_argument("--netns", action="store_true",
                      help="(root) run the daemons in network namespaces with a real "
                           "Linux mobile and a correspondent, and measure a handoff")
    demo.add_argument("--wifi", action="store_true",
                      help="with --netns: the MAGs are Wi-Fi access points (hostapd on "
                           "mac80211_hwsim radios) with context transfer and forwarding; "
                           "the mobile (wpa_supplicant) roams MAG1 -> MAG2 -> MAG1 under a "
                           "1,000 packets/s stream")
    demo.add_argument("--domains", action="store_true",
                      help="with --netns (a kernel with Mobile IPv6): two domains (LMA1, "
                           "LMA2, three MAGs, one in both), the GMA and a correspondent; a "
                           "Mobile IPv6 mobile (netlmm mn) and a plain one change domain "
                           "with a TCP connection open; exits 1 when the first one's "
                           "connection does not survive")
    demo.add_argument("--dataplane", default=None, choices=("seg6", "userspace", "ip6tnl"),
                      help="with --netns: the data plane (default: seg6 where the kernel "
                           "has seg6 lightweight tunnels, else userspace)")
    ctl = sub.add_parser("mag-ctl", help="tell a running MAG (attachment detector "
                         "'control') that a mobile attached or detached")
    ctl.add_argument("--socket", required=True, help="the MAG's control socket path")
    ctl.add_argument("words", nargs="+", help="attach MNID [PHOA] | detach MNID | list")
    daemonCtl = sub.add_parser("ctl", help="list or show the bindings of a running LMA "
                               "or PMIP client over its [control] socket; deregister one "
                               "at the PMIP client; move a mobile to another LMA")
    daemonCtl.add_argument("--socket", required=True,
                           help="the daemon's control socket path")
    daemonCtl.add_argument("words", nargs="+", help="list | show KEY | deregister KEY (KEY: "
                           "an MN identifier, a home address or a pCoA) | drain | undrain "
                           "(a PMIP client: itself) | with several LMAs: move MNID LMA | "
                           "drain LMA | undrain LMA | lmas")
    mn = sub.add_parser("mn", help="(root) keep this host's home address at the GMA as "
                        "it moves (RFC 6275 mobile node); --config FILE, --help for keys",
                        add_help=False)
    sub.add_parser("plugins", help="list the installed address-assignment strategies, "
                   "attachment detectors and data planes (plugins) with their modules")
    from netlmm import pki
    pki.addParser(sub)
    args = parser.parse_args(argv)
    if args.command == "pki":
        return pki.main(args, sys.stdout)
    if args.command == "demo" and args.netns:
        from netlmm import demo_netns
        if args.wifi and args.domains:
            parser.error("--wifi and --domains are two different demos")
        if args.domains:
            return demo_netns.runDomains(dataplane=args.dataplane)
        if args.wifi:
            return demo_netns.runWifi(dataplane=args.dataplane)
        return demo_netns.run(dataplane=args.dataplane)
    if args.command == "demo" and (args.wifi or args.domains):
        parser.error(f"--{'wifi' if args.wifi else 'domains'} goes with --netns")
    if args.command == "demo":
        from netlmm import demo
        return demo.main()
    if args.command == "plugins":
        from netlmm.registry import describe
        return describe(sys.stdout)
    if args.command == "ctl":
        from netlmm.ctl import clientMain
        return clientMain(args.socket, args.words)
    if args.command == "mag-ctl":
        from netlmm.access.control import clientMain
        return clientMain(args.socket, args.words)
    return 2


if __name__ == "__main__":
    sys.exit(main())
