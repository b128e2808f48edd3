"""
Reading the signalling back off the wire: a small pcap reader (Ethernet,
IPv6, UDP and TCP) and the decoding of the Mobility Header over UDP and of the
MAG <-> PMIP client stream over TCP, for `netlmm demo --netns`. Pure Python,
no Twisted; malformed frames are skipped.
"""

import struct
from collections import namedtuple
from ipaddress import IPv6Address

from netlmm.transport.mh import MH_UDP_PORT
from netlmm.wire import DecodeError, control, fho

Packet = namedtuple("Packet", "time src dst proto sport dport seq payload")
Message = namedtuple("Message", "time src dst message")


def readPcap(path):
    """The IPv6 UDP, TCP and IPv6-in-IPv6 packets of a pcap file (Ethernet link type)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file")
    scale = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    if linktype != 1:
        raise ValueError(f"{path}: link type {linktype}, expected Ethernet (1)")
    packets = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack_from(endian + "IIII", data, pos)
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        p = _ipv6(sec + frac * scale, frame)
        if p is not None:
            packets.append(p)
    return packets


def _ipv6(t, frame):
    if len(frame) < 54 or frame[12:14] != b"\x86\xdd":
        return None
    ip = frame[14:]
    length, nxt = struct.unpack_from("!HB", ip, 4)
    src, dst = IPv6Address(ip[8:24]), IPv6Address(ip[24:40])
    body = ip[40:40 + length]
    if nxt == 17 and len(body) >= 8:
        sport, dport = struct.unpack_from("!HH", body)
        return Packet(t, src, dst, "udp", sport, dport, None, body[8:])
    if nxt == 6 and len(body) >= 20:
        sport, dport, seq = struct.unpack_from("!HHI", body)
        offset = (body[12] >> 4) * 4
        return Packet(t, src, dst, "tcp", sport, dport, seq, body[offset:])
    if nxt == 41:
        # IPv6-in-IPv6 (a tunnel between MAGs): the payload is the inner packet.
        return Packet(t, src, dst, "ipip", 0, 0, None, body)
    return None


def signalling(packets, controlPort):
    """
    The messages in C{packets}: Mobility Headers over UDP port 5436 (checksum
    checked) and control messages on TCP port C{controlPort}, in time order.
    """
    out = []
    streams = {}
    for p in packets:
        if p.proto == "udp" and MH_UDP_PORT in (p.sport, p.dport):
            try:
                # fho's decoder reads the MAGs' HI/HAck (RFC 5949) too.
                out.append(Message(p.time, p.src, p.dst,
                                   fho.decodeMessage(p.payload, p.src, p.dst)))
            except DecodeError:
                continue
        elif p.proto == "tcp" and controlPort in (p.sport, p.dport) and p.payload:
            key = (p.src, p.sport, p.dst, p.dport)
            state = streams.setdefault(key, {"next": p.seq, "buffer": b""})
            if p.seq != state["next"]:
                continue  # a retransmission (or a gap we cannot fill)
            state["next"] = (p.seq + len(p.payload)) & 0xFFFFFFFF
            state["buffer"] += p.payload
            buf = state["buffer"]
            while len(buf) >= 2:
                try:
                    length = control.peekLength(buf)
                except DecodeError:
                    buf = b""
                    break
                if len(buf) < length:
                    break
                frame, buf = buf[:length], buf[length:]
                try:
                    out.append(Message(p.time, p.src, p.dst, control.decodeControl(frame)))
                except DecodeError:
                    pass
            state["buffer"] = buf
    return out
