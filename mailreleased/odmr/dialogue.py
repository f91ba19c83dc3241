"""Parse the commands a provider sends after the ATRN reversal.

This layer does no I/O: it turns a command line into a :class:`Command`,
a ``MAIL``/``RCPT`` argument into an address with parameters, and decides
whether a recipient belongs to the target's domains.
"""

from __future__ import annotations

import dataclasses
import enum
import re


class State(enum.Enum):
    """Position of the reversed session in the command order of RFC 5321 section 4.1.4."""

    GREETED = "greeted"
    READY = "ready"
    MAIL = "mail"
    RCPT = "rcpt"
    CLOSED = "closed"


# Verbs RFC 5321 and its extensions define but this receiver does not offer;
# they get 502 rather than the 500 of an unknown verb.
UNIMPLEMENTED_VERBS = frozenset(
    {"HELP", "EXPN", "TURN", "ETRN", "ATRN", "BDAT", "STARTTLS", "AUTH", "VERB", "SEND", "SOML", "SAML"}
)

_MAIL_PREFIX = re.compile(r"^FROM:\s*", re.IGNORECASE)
_RCPT_PREFIX = re.compile(r"^TO:\s*", re.IGNORECASE)
_PARAM = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e]+))?$")
_ADDRESS_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_MAX_ADDRESS_LENGTH = 512


class CommandSyntaxError(ValueError):
    """A command argument is malformed; ``reply`` is the SMTP reply to send."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        super().__init__(reply)


@dataclasses.dataclass(frozen=True, slots=True)
class Command:
    """One command line: the upper-cased verb and the raw argument."""

    verb: str
    argument: str


@dataclasses.dataclass(frozen=True, slots=True)
class Path:
    """A ``MAIL FROM`` or ``RCPT TO`` path: the mailbox ("" for ``<>``) and its parameters."""

    address: str
    parameters: dict[str, str | None]


def parse_command(line: str) -> Command:
    """Split a command line (without its line ending) into verb and argument."""
    verb, _, argument = line.strip(" ").partition(" ")
    return Command(verb.upper(), argument.strip(" "))


def parse_mail_from(argument: str) -> Path:
    """Parse the argument of ``MAIL``: ``FROM:<address> [params]``."""
    match = _MAIL_PREFIX.match(argument)
    if match is None:
        raise CommandSyntaxError("501 5.5.4 Syntax: MAIL FROM:<address>")
    return _parse_path(argument[match.end() :], allow_null=True)


def parse_rcpt_to(argument: str) -> Path:
    """Parse the argument of ``RCPT``: ``TO:<address> [params]``."""
    match = _RCPT_PREFIX.match(argument)
    if match is None:
        raise CommandSyntaxError("501 5.5.4 Syntax: RCPT TO:<address>")
    return _parse_path(argument[match.end() :], allow_null=False)


def _parse_path(text: str, *, allow_null: bool) -> Path:
    if not text.startswith("<"):
        raise CommandSyntaxError("501 5.5.4 Syntax: the address must be enclosed in <>")
    end = _closing_bracket(text)
    if end < 0:
        raise CommandSyntaxError("501 5.5.4 Syntax: missing > after the address")
    address = _strip_source_route(text[1:end])
    if _ADDRESS_FORBIDDEN.search(address) or len(address) > _MAX_ADDRESS_LENGTH:
        raise CommandSyntaxError("553 5.1.3 Invalid address")
    if not address and not allow_null:
        raise CommandSyntaxError("501 5.1.3 A recipient address is required")
    if address and "@" not in address:
        raise CommandSyntaxError("553 5.1.3 Address must contain a domain")
    return Path(address, _parse_parameters(text[end + 1 :]))


def _closing_bracket(text: str) -> int:
    """Return the index of the ``>`` that closes the path, skipping quoted strings."""
    quoted = False
    escaped = False
    for index, char in enumerate(text[1:], start=1):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return index
    return -1


def _strip_source_route(address: str) -> str:
    """Drop an RFC 5321 source route such as ``@a,@b:`` that servers must accept and ignore."""
    if address.startswith("@") and ":" in address:
        return address.split(":", 1)[1]
    return address


def _parse_parameters(text: str) -> dict[str, str | None]:
    parameters: dict[str, str | None] = {}
    for item in text.split():
        match = _PARAM.match(item)
        if match is None:
            raise CommandSyntaxError("501 5.5.4 Invalid parameter syntax")
        parameters[match.group(1).upper()] = match.group(2)
    return parameters


@dataclasses.dataclass(frozen=True, slots=True)
class MailOptions:
    """The ``MAIL`` parameters this receiver understands (RFC 1870, 6152 and 6531)."""

    size: int | None = None
    body_8bit: bool = False
    smtputf8: bool = False


def mail_options(parameters: dict[str, str | None]) -> MailOptions:
    """Check ``MAIL`` parameters: SIZE, BODY=7BIT or 8BITMIME, and SMTPUTF8.

    Raises CommandSyntaxError for a malformed value (501) or any other
    parameter (555), since the EHLO reply advertises no other extension.
    """
    size: int | None = None
    body_8bit = smtputf8 = False
    for name, value in parameters.items():
        if name == "SIZE":
            if value is None or not value.isdigit() or len(value) > 20:
                raise CommandSyntaxError("501 5.5.4 Invalid SIZE value")
            size = int(value)
        elif name == "BODY":
            if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                raise CommandSyntaxError("501 5.5.4 Unsupported BODY value")
            body_8bit = value.upper() == "8BITMIME"
        elif name == "SMTPUTF8" and value is None:
            smtputf8 = True
        else:
            raise CommandSyntaxError("555 5.5.4 Unsupported MAIL parameter")
    return MailOptions(size, body_8bit, smtputf8)


def domain_of(address: str) -> str:
    """Return the domain part of an address, lower-cased."""
    return address.rpartition("@")[2].lower()


def recipient_allowed(address: str, domains: tuple[str, ...]) -> bool:
    """Return whether ``address`` is in one of ``domains`` or a subdomain of one.

    Matching ignores case and a trailing dot. An empty ``domains`` allows
    every recipient.
    """
    if not domains:
        return True
    domain = domain_of(address).rstrip(".")
    for allowed in domains:
        allowed = allowed.lower().rstrip(".")
        if domain == allowed or domain.endswith("." + allowed):
            return True
    return False
