"""Start private mail peers (Postfix, Exim, fingerd) on loopback for interop tests."""
