"""Twisted services that wire the sans-IO cores to sockets, timers and data planes."""
