"""Weights from the hub without a reachable hub: a quick probe, the cache, a fast clear error.

"No hub" is simulated on this machine only: a closed local port (127.0.0.1:9), or a local
socket that accepts connections and never answers. No external address is contacted.
"""
from __future__ import annotations

import http.server
import shutil
import socket
import threading
import time

import pytest
from huggingface_hub import constants

import zuna_lab
from zuna_lab.model import hub
from zuna_lab.errors import WeightsUnavailableError
from zuna_lab.testing import make_random_checkpoint

CLOSED = "http://127.0.0.1:9"     # the discard port: nothing listens there, connections are refused


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_random_checkpoint(tmp_path_factory.mktemp("hub") / "ZUNA", variant="ZUNA")


@pytest.fixture
def no_hub(monkeypatch):
    """The hub endpoint is a closed local port; HF_HUB_OFFLINE is not set."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("ZUNA_LAB_MODEL", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", CLOSED)


@pytest.fixture
def silent_endpoint():
    """A local socket that accepts connections (kernel backlog) and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_probe_closed_port_fails_at_once():
    start = time.perf_counter()
    reason = hub.hub_unreachable(CLOSED)
    assert reason is not None and "127.0.0.1:9" in reason and "refused" in reason.lower()
    assert time.perf_counter() - start < 2


def test_probe_silent_endpoint_times_out(silent_endpoint):
    start = time.perf_counter()
    reason = hub.hub_unreachable(silent_endpoint, timeout=0.5)
    assert reason is not None and silent_endpoint in reason
    assert time.perf_counter() - start < 2


def test_probe_any_http_answer_is_reachable():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)      # not found is still an answer
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert hub.hub_unreachable(f"http://127.0.0.1:{server.server_port}") is None
    finally:
        server.shutdown()
        server.server_close()
    assert hub.hub_unreachable("not a url") is not None


def test_load_model_without_hub_fails_fast_with_the_fix(no_hub, tmp_path):
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as err:
        zuna_lab.load_model("Zyphra/ZUNA", device="cpu", cache_dir=tmp_path / "empty")
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert "offline or unreachable: http://127.0.0.1:9" in message
    assert "pass that directory, e.g. zuna_lab.load_model('/path/to/ZUNA')" in message
    assert "ZUNA_LAB_MODEL=/path/to/ZUNA" in message and "\n" not in message
    assert "127.0.0.1:9" in err.value.hub_unreachable      # the short reason, for callers such as the demo


def test_load_model_silent_hub_fails_within_the_timeout(monkeypatch, silent_endpoint, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", silent_endpoint)
    monkeypatch.setenv("ZUNA_LAB_HUB_TIMEOUT", "1")
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match="(timed out|no answer from)"):
        zuna_lab.load_model("Zyphra/ZUNA1.1", device="cpu", cache_dir=tmp_path / "empty")
    assert time.perf_counter() - start < 5


def test_cached_snapshot_loads_without_hub(no_hub, tmp_path, tiny):
    sha = "89abcdef0123456789abcdef0123456789abcdef"
    snapshot = tmp_path / "hub" / "models--Zyphra--ZUNA" / "snapshots" / sha
    snapshot.mkdir(parents=True)
    for name in (hub.CONFIG_NAME, hub.WEIGHTS_NAME):
        shutil.copy(tiny / name, snapshot / name)
    (tmp_path / "hub" / "models--Zyphra--ZUNA" / "refs").mkdir()
    (tmp_path / "hub" / "models--Zyphra--ZUNA" / "refs" / "main").write_text(sha)
    start = time.perf_counter()
    model = zuna_lab.load_model("Zyphra/ZUNA", device="cpu", cache_dir=tmp_path / "hub")
    assert time.perf_counter() - start < 5
    assert model.source == "Zyphra/ZUNA" and model.revision == sha and model.is_random


def test_offline_mode_never_probes(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "hub_unreachable", lambda *a, **k: pytest.fail("probed the hub with HF_HUB_OFFLINE=1"))
    with pytest.raises(WeightsUnavailableError, match="offline or unreachable"):
        zuna_lab.load_model("Zyphra/ZUNA", device="cpu", cache_dir=tmp_path / "empty")
