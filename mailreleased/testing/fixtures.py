"""Test helpers around the provider: a throwaway CA and loopback certificate made with trustme.

trustme is a test dependency, so it is imported only when a certificate is
requested; :func:`trustme_available` lets a test skip cleanly without it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ssl
from collections.abc import Sequence
from pathlib import Path

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclasses.dataclass(frozen=True)
class LoopbackCertificate:
    """PEM files of a test CA and a server certificate for loopback names."""

    ca_path: Path
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        """Return a server-side context with the certificate and key loaded."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Return a client-side context that trusts only the test CA."""
        return ssl.create_default_context(cafile=str(self.ca_path))


def trustme_available() -> bool:
    """Whether the trustme package is installed."""
    return importlib.util.find_spec("trustme") is not None


def make_loopback_certificate(directory: Path, names: Sequence[str] = LOOPBACK_NAMES) -> LoopbackCertificate:
    """Create a CA and a certificate for ``names`` in ``directory``; raise RuntimeError without trustme."""
    try:
        import trustme
    except ImportError:
        raise RuntimeError("trustme is not installed; install the test extras: pip install -e '.[test]'") from None
    authority = trustme.CA()
    issued = authority.issue_cert(*names)
    directory.mkdir(parents=True, exist_ok=True)
    certificate = LoopbackCertificate(
        ca_path=directory / "ca.pem",
        cert_path=directory / "server-chain.pem",
        key_path=directory / "server-key.pem",
    )
    authority.cert_pem.write_to_path(str(certificate.ca_path))
    with certificate.cert_path.open("wb") as stream:
        for blob in issued.cert_chain_pems:
            stream.write(blob.bytes())
    issued.private_key_pem.write_to_path(str(certificate.key_path))
    certificate.key_path.chmod(0o600)
    return certificate
