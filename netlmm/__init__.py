"""netlmm: network-based localized mobility management.

An implementation of draft-singh-netlmm-protocol-02: a Local Mobility Anchor
(LMA), a PMIP client that sends Proxy Binding Updates on behalf of mobiles,
and Mobile Access Gateways (MAGs) that terminate the tunnel.
"""

__version__ = "0.1.0"
