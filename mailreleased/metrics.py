"""Optional Prometheus metrics, served over HTTP from a background thread.

prometheus-client comes with the ``metrics`` extra. The daemon feeds every
processing run's outcome records into :meth:`Metrics.observe`; the HTTP server
(prometheus-client's WSGI server, on its own daemon thread) reads them.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from typing import Any

import structlog

from mailreleased import __version__
from mailreleased.config.model import MetricsConfig
from mailreleased.errors import ConfigError, MetricsUnavailable
from mailreleased.outcome import Outcome, SignalRecord
from mailreleased.state import TargetState

log = structlog.get_logger("mailreleased.metrics")

# Signals take from milliseconds (a refused ETRN) to hours (a large ATRN drain).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Metrics:
    """The daemon's collectors in their own registry, and the HTTP endpoint serving them."""

    def __init__(self, config: MetricsConfig) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise ConfigError(
                "'metrics' is set but prometheus-client is not installed; "
                "install it with: pip install 'mailreleased[metrics]', or remove 'metrics' from the config",
                key_path="metrics",
            ) from None

        self.config = config
        self.address = split_listen(config.listen)
        self.registry = prom.CollectorRegistry()
        self._server: Any = None

        self.signals = prom.Counter(
            "mailreleased_signals", "Outcome records by target, method and outcome (last attempt of each run).",
            ["target", "method", "outcome"], registry=self.registry,
        )
        self.duration = prom.Histogram(
            "mailreleased_signal_duration_seconds", "Duration of one signal, from connect to the last reply.",
            ["target", "method"], buckets=DURATION_BUCKETS, registry=self.registry,
        )
        self.atrn_messages = prom.Counter(
            "mailreleased_atrn_messages", "Messages received after an ATRN reversal.",
            ["target"], registry=self.registry,
        )
        self.atrn_bytes = prom.Counter(
            "mailreleased_atrn_bytes", "Message bytes received after an ATRN reversal.",
            ["target"], registry=self.registry,
        )
        self.last_success = prom.Gauge(
            "mailreleased_last_success_timestamp_seconds", "POSIX time of the target's last successful signal.",
            ["target"], registry=self.registry,
        )
        self.info = prom.Info("mailreleased_build", "Version of mailreleased and Python.", registry=self.registry)
        self.info.info({"version": __version__, "python": platform.python_version()})

    def start(self) -> None:
        """Start the HTTP endpoint; raise MetricsUnavailable if the address cannot be bound."""
        from prometheus_client import start_http_server

        host, port = self.address
        try:
            self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise MetricsUnavailable(
                f"metrics.listen {self.config.listen!r} cannot be bound: {exc.strerror or exc}; "
                "pick a free address or remove 'metrics'"
            ) from None
        log.info("metrics_listening", listen=self.config.listen)

    @property
    def port(self) -> int:
        """The bound port (useful when the config asked for port 0)."""
        return int(self._server.server_port)

    def stop(self) -> None:
        """Stop the HTTP endpoint."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def load_state(self, states: dict[str, TargetState]) -> None:
        """Set the last-success gauges from the state file, so they survive restarts."""
        for name, state in states.items():
            if state.last_success is not None:
                self.last_success.labels(target=name).set(state.last_success)

    def observe(self, records: Iterable[SignalRecord], state: TargetState | None = None) -> None:
        """Count one target's outcome records of one processing run."""
        for record in records:
            self.signals.labels(target=record.target, method=record.method, outcome=str(record.outcome)).inc()
            if record.outcome is not Outcome.SKIPPED and record.duration_ms is not None:
                self.duration.labels(target=record.target, method=record.method).observe(record.duration_ms / 1000)
            # ETRN 253 also fills ``messages`` (the server's count of pending mail), which was not received.
            if record.method == "atrn" and record.messages:
                self.atrn_messages.labels(target=record.target).inc(record.messages)
            if record.method == "atrn" and record.bytes:
                self.atrn_bytes.labels(target=record.target).inc(record.bytes)
            if state is not None and state.last_success is not None:
                self.last_success.labels(target=record.target).set(state.last_success)


def split_listen(value: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[ipv6]:port``; raise ConfigError naming the expected form."""
    host, colon, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f"invalid value {value!r}: use host:port, such as '127.0.0.1:9466' or '[::1]:9466'",
            key_path="metrics.listen",
        )
    return host, int(port)
