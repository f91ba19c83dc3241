"""Loopback fake servers that play scripts and record what clients send."""
