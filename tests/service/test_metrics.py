"""The optional Prometheus endpoint: scraped over loopback after a run."""

from __future__ import annotations

import asyncio
import sys
import urllib.request
from pathlib import Path

import pytest

from mailreleased.config.loader import load_config, parse_config
from mailreleased.config.model import MetricsConfig
from mailreleased.daemon import Daemon
from mailreleased.errors import ConfigError
from mailreleased.metrics import Metrics
from mailreleased.outcome import Outcome
from tests.service.conftest import WAIT, RecordingNotifier, ScriptedSignaler, write_config

pytest.importorskip("prometheus_client")

TARGETS = "- {name: alpha, method: connect, host: 127.0.0.1, port: 9}\n"


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT) as response:
        return str(response.read().decode())


async def test_scrape_after_run(tmp_path: Path, signaler: ScriptedSignaler) -> None:
    """Counters, the duration histogram, last success and build info appear after one run."""
    config = load_config(write_config(tmp_path, TARGETS, extra='metrics: {listen: "127.0.0.1:0"}\n'))
    daemon = Daemon(config, notifier=RecordingNotifier())
    daemon.store.load()
    signaler.outcomes["alpha"] = [Outcome.TEMPFAIL, Outcome.RELEASED]
    assert daemon.metrics is not None
    daemon.metrics.start()
    try:
        await asyncio.wait_for(daemon.run(["alpha"]), timeout=WAIT)
        await asyncio.wait_for(daemon.run(["alpha"]), timeout=WAIT)
        text = await asyncio.to_thread(_scrape, daemon.metrics.port)
    finally:
        await daemon.stop(grace=WAIT)
    assert 'mailreleased_signals_total{method="connect",outcome="tempfail",target="alpha"} 1.0' in text
    assert 'mailreleased_signals_total{method="connect",outcome="released",target="alpha"} 1.0' in text
    assert 'mailreleased_signal_duration_seconds_count{method="connect",target="alpha"} 2.0' in text
    assert 'mailreleased_last_success_timestamp_seconds{target="alpha"}' in text
    assert 'mailreleased_build_info{python=' in text
    assert "# TYPE mailreleased_atrn_messages_total counter" in text
    assert "# TYPE mailreleased_atrn_bytes_total counter" in text


def test_atrn_counters() -> None:
    """Messages and bytes of ATRN records are added to their counters."""
    from mailreleased.outcome import SignalRecord

    metrics = Metrics(MetricsConfig(listen="127.0.0.1:0"))
    record = SignalRecord(
        target="odmr", method="atrn", host="127.0.0.1", port=366, domain=None,
        outcome=Outcome.RECEIVED, duration_ms=2500, messages=3, bytes=4096,
    )
    metrics.observe([record])
    metrics.observe([record])
    assert metrics.registry.get_sample_value("mailreleased_atrn_messages_total", {"target": "odmr"}) == 6
    assert metrics.registry.get_sample_value("mailreleased_atrn_bytes_total", {"target": "odmr"}) == 8192


def test_etrn_pending_count_not_counted() -> None:
    """An ETRN 253 pending-message count is not mail received, so the ATRN counters ignore it."""
    from mailreleased.outcome import SignalRecord

    metrics = Metrics(MetricsConfig(listen="127.0.0.1:0"))
    record = SignalRecord(
        target="mx2", method="etrn", host="127.0.0.1", port=25, domain="example.org",
        outcome=Outcome.RELEASED, code=253, duration_ms=40, messages=12,
    )
    metrics.observe([record])
    assert metrics.registry.get_sample_value("mailreleased_atrn_messages_total", {"target": "mx2"}) is None
    assert metrics.registry.get_sample_value(
        "mailreleased_signals_total", {"target": "mx2", "method": "etrn", "outcome": "released"}
    ) == 1


def test_missing_library_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Configured metrics without prometheus-client fail like a config error, naming the fix."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ConfigError, match=r"pip install 'mailreleased\[metrics\]'") as caught:
        Metrics(MetricsConfig())
    assert caught.value.key_path == "metrics"


@pytest.mark.parametrize("listen", ["9466", "localhost:", ":9466", "127.0.0.1:99999"])
def test_invalid_listen_rejected(listen: str) -> None:
    """A listen address without host and port is a config error on metrics.listen, at load time."""
    text = f"metrics: {{listen: '{listen}'}}\ntargets:\n  - {{name: a, method: finger, host: 127.0.0.1}}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.key_path == "metrics.listen"
