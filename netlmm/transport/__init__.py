"""Twisted adapters: Mobility Header sockets, the MAG <-> PMIP client stream (TCP, TLS, SCTP)."""
