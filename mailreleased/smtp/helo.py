"""The name this client announces in EHLO and HELO."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from mailreleased.config.model import Target
from mailreleased.smtp.protocol import ReleaseProtocol

_machine_fqdn: str | None = None
# The lookup in progress and its event loop: concurrent sessions share it instead of each starting one.
_pending_lookup: tuple[asyncio.AbstractEventLoop, asyncio.Task[str]] | None = None


async def helo_name(target: Target, protocol: ReleaseProtocol) -> str:
    """Return ``helo_name``, else this machine's FQDN, else an address literal of the local socket.

    RFC 5321 section 4.1.1.1 recommends an address literal when the client has
    no meaningful domain name, so a name without a dot is not used.
    """
    if target.helo_name:
        return target.helo_name
    fqdn = await _fqdn()
    if "." in fqdn:
        return fqdn
    transport = protocol.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    address = str(sockname[0]) if sockname else "127.0.0.1"
    return address_literal(address)


def address_literal(address: str) -> str:
    """Return the RFC 5321 address literal of an IP address: ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``."""
    parsed = ipaddress.ip_address(address.split("%", 1)[0])
    if parsed.version == 6:
        return f"[IPv6:{parsed.compressed}]"
    return f"[{parsed}]"


async def _fqdn() -> str:
    global _machine_fqdn, _pending_lookup
    if _machine_fqdn is not None:
        return _machine_fqdn
    loop = asyncio.get_running_loop()
    if _pending_lookup is None or _pending_lookup[0] is not loop:
        # getfqdn may consult the resolver, so keep it off the event loop.
        _pending_lookup = (loop, loop.create_task(asyncio.to_thread(socket.getfqdn)))
    fqdn = await asyncio.shield(_pending_lookup[1])
    _machine_fqdn = fqdn
    return fqdn
