"""The REST client's run polling survives a missed poll (httpx's mock transport)."""

from __future__ import annotations

import httpx
import pytest

from airscale.errors import AirscaleError
from airscale.workload import client as client_mod
from airscale.workload.client import AirflowClient


def _client(monkeypatch, handler) -> AirflowClient:
    real = httpx.Client

    def fake_client(*args, **kw):
        return real(*args, transport=httpx.MockTransport(handler), **kw)

    monkeypatch.setattr(client_mod.httpx, "Client", fake_client)
    monkeypatch.setattr(client_mod.time, "sleep", lambda _s: None)
    return AirflowClient("http://api.test", "admin", "pw")


def _answers(timeouts: int, final_state: str = "success"):
    calls = {"timeouts": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(200, json={"access_token": "t"})
        if request.url.path.endswith("/taskInstances"):
            if calls["timeouts"] < timeouts:
                calls["timeouts"] += 1
                raise httpx.ReadTimeout("timed out", request=request)
            return httpx.Response(200, json={"task_instances": [{"state": "success"}]})
        return httpx.Response(200, json={"state": final_state})

    return handler, calls


def test_a_timed_out_poll_is_asked_again(monkeypatch) -> None:
    handler, calls = _answers(timeouts=2)
    result = _client(monkeypatch, handler).wait_for_run("d", "r", timeout=60)
    assert result.state == "success" and calls["timeouts"] == 2


def test_an_api_server_that_never_answers_is_an_error_past_the_deadline(monkeypatch) -> None:
    handler, _ = _answers(timeouts=10**9)
    with pytest.raises(AirscaleError, match="did not answer"):
        _client(monkeypatch, handler).wait_for_run("d", "r", timeout=0)
