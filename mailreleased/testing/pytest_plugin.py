"""pytest fixtures for the loopback provider; import them into a conftest.py.

Example ``conftest.py``::

    from mailreleased.testing.pytest_plugin import loopback_certificate, loopback_provider

The async fixture needs pytest-asyncio in auto mode, as this project
configures it. pytest is a test dependency, so the package itself never
imports this module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailreleased.testing.fixtures import LoopbackCertificate, make_loopback_certificate, trustme_available
from mailreleased.testing.messages import make_messages
from mailreleased.testing.provider import Provider

PROVIDER_DOMAIN = "example.test"
PROVIDER_USER = "customer"
PROVIDER_PASSWORD = "customer-password"
PROVIDER_MESSAGES = 3
# Seconds the fixture provider waits for a command or reply, so a stuck test ends.
PROVIDER_TIMEOUT = 30.0


@pytest.fixture
def loopback_certificate(tmp_path: Path) -> LoopbackCertificate:
    """A throwaway CA and a certificate for localhost, 127.0.0.1 and ::1; skips without trustme."""
    if not trustme_available():
        pytest.skip("trustme is not installed; install the test extras: pip install -e '.[test]'")
    return make_loopback_certificate(tmp_path / "loopback-tls")


@pytest.fixture
async def loopback_provider() -> AsyncIterator[Provider]:
    """A running provider on 127.0.0.1 with PROVIDER_MESSAGES messages for PROVIDER_DOMAIN.

    The account is PROVIDER_USER with PROVIDER_PASSWORD.
    """
    async with Provider(
        domains=[PROVIDER_DOMAIN],
        users={PROVIDER_USER: PROVIDER_PASSWORD},
        queue=make_messages(PROVIDER_DOMAIN, PROVIDER_MESSAGES),
        command_timeout=PROVIDER_TIMEOUT,
        reply_timeout=PROVIDER_TIMEOUT,
    ) as provider:
        yield provider
