"""A built-in loopback ETRN and ODMR (ATRN) provider for demos, tests and benchmarks.

The provider keeps a mail queue and replies to ETRN and ATRN as a mail host
that stores mail for its customers does. After a successful ATRN it turns the
line around and delivers the queue as an SMTP client. Import it from
:mod:`mailreleased.testing.provider`; run it as a separate process with
``python -m mailreleased.testing.provider --help``.

This package does not import its modules eagerly, so that running the provider
module with ``python -m`` does not load it twice.
"""
