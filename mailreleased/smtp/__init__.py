"""The SMTP client layer: sessions, replies, AUTH and the reply classification."""

from mailreleased.errors import SessionError
from mailreleased.smtp.auth import cram_md5_response
from mailreleased.smtp.classify import Action, Failure, Stage, classify, classify_atrn
from mailreleased.smtp.opening import open_session
from mailreleased.smtp.reply import Reply, sanitize
from mailreleased.smtp.session import ClientSession

__all__ = [
    "Action",
    "ClientSession",
    "Failure",
    "Reply",
    "SessionError",
    "Stage",
    "classify",
    "classify_atrn",
    "cram_md5_response",
    "open_session",
    "sanitize",
]
