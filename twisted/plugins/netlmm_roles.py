"""twistd plugins for the three netlmm roles."""

from twisted.application.service import ServiceMaker

netlmmLma = ServiceMaker(
    "netlmm LMA", "netlmm.tap.lma",
    "Local Mobility Anchor: answers Proxy Binding Updates", "netlmm-lma")
netlmmPmip = ServiceMaker(
    "netlmm PMIP client", "netlmm.tap.pmip",
    "PMIP client: sends Proxy Binding Updates on the MAGs' behalf", "netlmm-pmip")
netlmmMag = ServiceMaker(
    "netlmm MAG", "netlmm.tap.mag",
    "Mobile Access Gateway: triggers the PMIP client, ends the tunnel", "netlmm-mag")
