"""twistd plugins for the netlmm roles."""

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
netlmmGma = ServiceMaker(
    "netlmm GMA", "netlmm.tap.gma",
    "Global Mobility Anchor: a Mobile IPv6 home agent for netlmm mn", "netlmm-gma")
netlmmMn = ServiceMaker(
    "netlmm mobile node", "netlmm.tap.mn",
    "A Linux host's Mobile IPv6 home registration with the GMA (netlmm mn)", "netlmm-mn")
