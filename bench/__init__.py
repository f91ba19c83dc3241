"""Benchmarks of mailreleased against real peers, run with ``python -m bench``.

Every measure starts its own servers on loopback: the built-in provider,
a private Postfix instance, a discard SMTP sink or fetchmail. It runs
mailreleased and a reference side by side in the same run and reports the
median and spread of several repetitions. ``python -m bench --help`` lists
the options; docs/benchmarks.md contains the last full run.
"""
