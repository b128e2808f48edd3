"""
Kernel IPsec in a lab: ESP in transport mode protecting one IPv6 protocol
(the Mobility Header, 135, by default) between two nodes, keyed by hand, as
RFC 5213 section 4 asks between a MAG and its LMA. Needs the C{esp}
capability (kernel-lab on the build machines).
"""

#: Test keys (never use fixed keys outside a lab): AES-128-CBC and HMAC-SHA-256.
ENCRYPTION_KEY = "0x" + "5213" * 8
AUTHENTICATION_KEY = "0x" + "6275" * 16


def xfrmCommands(local, remote, protocol=135, spi=0x5213):
    """
    The `ip xfrm` argument lists that make C{local} protect C{protocol} to and
    from C{remote}: an SA each way (SPIs C{spi} from the lower address to the
    higher, C{spi + 1} back) and the out and in policies, so that unprotected
    C{protocol} packets are neither sent nor accepted.
    """
    low, high = sorted((str(local), str(remote)), key=lambda a: a.encode())
    spis = {(low, high): spi, (high, low): spi + 1}
    commands = []
    for (src, dst), value in sorted(spis.items()):
        commands.append(["state", "add", "src", src, "dst", dst, "proto", "esp",
                         "spi", hex(value), "mode", "transport", "replay-window", "32",
                         "enc", "cbc(aes)", ENCRYPTION_KEY,
                         "auth-trunc", "hmac(sha256)", AUTHENTICATION_KEY, "128"])
    for src, dst, direction in ((local, remote, "out"), (remote, local, "in")):
        commands.append(["policy", "add", "src", f"{src}/128", "dst", f"{dst}/128",
                         "proto", str(protocol), "dir", direction,
                         "tmpl", "src", str(src), "dst", str(dst), "proto", "esp",
                         "mode", "transport"])
    return commands


def protect(lab, a, addressA, b, addressB, protocol=135, spi=0x5213):
    """
    ESP transport mode for C{protocol} between C{a} (C{addressA}) and C{b};
    C{spi} and C{spi + 1} must be unused at both (one pair of nodes each).
    """
    for node, local, remote in ((a, addressA, addressB), (b, addressB, addressA)):
        for argv in xfrmCommands(local, remote, protocol, spi):
            lab.exec(node, "ip", "xfrm", *argv)
