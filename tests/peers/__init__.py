"""Start private mail peers (Postfix, Exim, fingerd) on loopback for interop tests.

Each starter runs its own instance in a temporary directory on free
127.0.0.1 ports and stops it by PID. .ci/install-peers installs the
programs, and the instances need root.

- ``postfix.PostfixBackupMx``: Postfix 3.7 holding hold.test until ETRN.
- ``exim_etrn.Exim496EtrnServer``: Exim 4.96 holding hold.test until ``ETRN #hold.test``.
- ``exim_odmr.EximOdmrProvider``: Exim >= 4.99 (sid chroot) as an ATRN provider.
- ``fingerd.FingerServer``: in.fingerd behind socat.
- ``receiver.RecordingReceiver``: records the mail that the peers release.
- ``odmr_customer.run_odmr_session``: a stdlib ODMR customer for peer checks.
- ``cli.run_once``: runs ``mailreleased once --json`` and parses its records.

``fixtures`` wraps the starters as pytest fixtures, and
tests/interop/conftest.py imports them.
"""
