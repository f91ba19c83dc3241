"""Configuration: the typed model and the YAML loader with located errors."""

from mailreleased.config.model import (
    AuthConfig,
    Config,
    Method,
    ReceiverLimits,
    RetryPolicy,
    Target,
    TlsMode,
)

__all__ = ["AuthConfig", "Config", "Method", "ReceiverLimits", "RetryPolicy", "Target", "TlsMode"]
