"""The exception hierarchy: one root, with the facts as attributes."""

from __future__ import annotations

from mailreleased.outcome import Outcome


class MailreleasedError(Exception):
    """Root of every error that mailreleased raises on purpose."""


class ConfigError(MailreleasedError):
    """A configuration file is invalid; the message names the place and the fix.

    ``source`` is the file path, ``line`` the 1-based line (or None), and
    ``key_path`` the dotted key path such as ``targets[0].port``.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        key_path: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.key_path = key_path
        super().__init__(self.render())

    def render(self) -> str:
        """Format the error as one line: ``file:line: key.path: message``."""
        where = ""
        if self.source is not None:
            where = self.source if self.line is None else f"{self.source}:{self.line}"
            where += ": "
        key = f"{self.key_path}: " if self.key_path else ""
        return f"{where}{key}{self.message}"


class StateError(MailreleasedError):
    """The state directory cannot be read or written."""


class ControlError(MailreleasedError):
    """The control socket of a running daemon cannot be reached or sent an invalid response."""


class SessionError(MailreleasedError):
    """An SMTP client session could not go on.

    ``outcome`` is the :class:`~mailreleased.outcome.Outcome` to record,
    ``code`` the last reply code (or None), ``reply`` the last reply text,
    already stripped of control characters, and ``detail`` a short reason.
    None of them ever contains a credential.
    """

    def __init__(
        self,
        outcome: Outcome,
        code: int | None = None,
        reply: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.outcome = outcome
        self.code = code
        self.reply = reply
        self.detail = detail
        super().__init__(self.render())

    def render(self) -> str:
        """Format the error as one line: ``outcome: detail (code reply)``."""
        text = f"{self.outcome}: {self.detail or 'session failed'}"
        if self.code is not None:
            text += f" ({self.code} {self.reply})" if self.reply else f" ({self.code})"
        return text


class ControlSocketInUse(ControlError):
    """Another daemon accepts connections on the control socket."""


class ControlSocketUnavailable(ControlError):
    """The control socket or its directory cannot be created."""


class MetricsUnavailable(MailreleasedError):
    """The metrics endpoint cannot listen on its address."""
