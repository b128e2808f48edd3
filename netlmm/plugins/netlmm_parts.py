"""netlmm's own pluggable parts (strategies, detectors, data planes, anchor policies)."""

from netlmm.registry import (
    AddressAssignmentPlugin, AnchorPolicyPlugin, AttachmentDetectorPlugin, DataPlanePlugin,
)

static = AddressAssignmentPlugin(
    "static", "netlmm.assignment.static", "StaticAssignment.fromConfig",
    "pHoA from the attachment or a configured MN identifier -> address table")
lmaAssigned = AddressAssignmentPlugin(
    "lma-assigned", "netlmm.assignment.lma", "LmaAssignment.fromConfig",
    "the LMA assigns the pHoA from its pool (draft Appendix A)")
dhcpRelay = AddressAssignmentPlugin(
    "dhcp-relay", "netlmm.assignment.dhcp6relay", "DhcpRelayAssignment.fromConfig",
    "the MAG relays the mobile's DHCPv6 to a server and learns the pHoA (draft 4.1 step 2)")
prefix = AddressAssignmentPlugin(
    "prefix", "netlmm.assignment.prefix", "PrefixAssignment.fromConfig",
    "a prefix of its own for each mobile, advertised to it alone (draft E.3, RFC 5213)")
slaac = AddressAssignmentPlugin(
    "slaac", "netlmm.assignment.slaac", "SlaacAssignment.fromConfig",
    "the mobile's SLAAC address, learned from its DAD (draft Appendix B)")

control = AttachmentDetectorPlugin(
    "control", "netlmm.access.control", "ControlDetector.fromConfig",
    "attach/detach commanded over a UNIX socket (`netlmm mag-ctl`)")
rs = AttachmentDetectorPlugin(
    "rs", "netlmm.access.rs", "RsDetector.fromConfig",
    "attachments from Router Solicitations, detachments by idle time")
link = AttachmentDetectorPlugin(
    "link", "netlmm.access.netlink", "LinkDetector.fromConfig",
    "the access bridge's port and FDB events")
hostapd = AttachmentDetectorPlugin(
    "hostapd", "netlmm.access.hostapd", "HostapdDetector.fromConfig",
    "stations associating with a Wi-Fi access point (hostapd's control socket)")

memory = DataPlanePlugin(
    "memory", "netlmm.dataplane.memory", "MemoryDataPlane.fromConfig",
    "records routes and tunnels in memory, moves no packets (tests, demo)")
seg6 = DataPlanePlugin(
    "seg6", "netlmm.dataplane.seg6", "Seg6DataPlane.fromConfig",
    "kernel IPv6-in-IPv6 with seg6 lightweight tunnels")
ip6tnl = DataPlanePlugin(
    "ip6tnl", "netlmm.dataplane.ip6tnl", "Ip6tnlDataPlane.fromConfig",
    "kernel ip6tnl tunnel devices")
userspace = DataPlanePlugin(
    "userspace", "netlmm.dataplane.userspace", "UserspaceDataPlane.fromConfig",
    "IPv6-in-IPv6 through the daemon over a TUN device")

staticAnchors = AnchorPolicyPlugin(
    "static", "netlmm.core.anchors", "StaticAnchors.fromConfig",
    "the LMA anchoring the mobile's home prefix, else an MN-ID map, else the default LMA")
hashAnchors = AnchorPolicyPlugin(
    "hash", "netlmm.core.anchors", "HashAnchors.fromConfig",
    "the LMA anchoring the mobile's home prefix, else an MN-ID map, else a stable hash")
aaaAnchors = AnchorPolicyPlugin(
    "aaa", "netlmm.core.anchors", "AaaAnchors.fromConfig",
    "the LMA anchoring the mobile's home prefix, else an MN-ID map, else the LMA the AAA "
    "server names (RFC 6572), else the default LMA")
leastLoadedAnchors = AnchorPolicyPlugin(
    "least-loaded", "netlmm.core.anchors", "LeastLoadedAnchors.fromConfig",
    "the LMA anchoring the mobile's home prefix, else an MN-ID map, else the least loaded")
