"""Hypothesis settings for the fuzz tests: a light CI form and a full form.

``MAILRELEASED_FUZZ=full`` selects the full form. The settings are applied per
test with :func:`fuzz_settings`, so loading this module changes no global
Hypothesis profile that other test packages might rely on.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FULL = os.environ.get("MAILRELEASED_FUZZ") == "full"
CI_EXAMPLES = 200


def fuzz_settings(full_examples: int, ci_examples: int = CI_EXAMPLES) -> settings:
    """Return settings with ``full_examples`` under the full form, ``ci_examples`` otherwise.

    Deadlines are off because the examples do real I/O on loopback sockets;
    every example bounds its own time with explicit timeouts instead.
    """
    return settings(
        max_examples=full_examples if FULL else ci_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=not FULL,
        print_blob=True,
    )
