"""
Message-level security between PMIP client and LMA (draft sections 4.3, 6
and Appendix C) without kernel IPsec: RFC 4285 MN-HA authentication
(L{netlmm.security.auth}), replay protection (L{netlmm.security.replay}),
the guards each role runs (L{netlmm.security.guard}), static key files
(L{netlmm.security.keystore}) and keys fetched from RADIUS
(L{netlmm.security.radius}, which alone uses Twisted).
"""
