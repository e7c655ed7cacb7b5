"""The bundled alert receiver takes alerts only with its bearer token: a local account that
can reach the loopback port cannot forge or bury alerts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from airscale.observe.alertmanager import alertmanager_config
from airscale.observe.receiver import authorized, receiver_token, serve
from airscale.spec import Spec

TOKEN = receiver_token("cluster-secret")


@pytest.mark.parametrize("header, ok", [
    (f"Bearer {TOKEN}", True),
    (f"bearer {TOKEN}", True),
    (None, False),
    ("", False),
    (f"Basic {TOKEN}", False),
    (f"Bearer {TOKEN[:-1]}", False),
    ("Bearer ", False),
])
def test_authorized(header, ok):
    assert authorized(header, TOKEN) is ok


def test_token_is_derived_and_secret_dependent():
    assert receiver_token("a") == receiver_token("a") != receiver_token("b")


def test_receiver_refuses_a_post_without_its_token(tmp_path: Path):
    out = tmp_path / "alerts.jsonl"
    server = serve("127.0.0.1", 0, out, TOKEN)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    body = {"receiver": "local", "alerts": [{"status": "firing", "labels": {"alertname": "Forged"}}]}
    try:
        assert httpx.post(url, json=body).status_code == 401
        assert httpx.post(url, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert not out.exists()
        assert httpx.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert [json.loads(line)["alertname"] for line in out.read_text().splitlines()] == ["Forged"]
    finally:
        server.shutdown()


def test_alertmanager_sends_the_token_from_its_file():
    am = alertmanager_config(Spec.model_validate({}), "/data/monitoring/alert-receiver.token")
    (local,) = [r for r in am["receivers"] if r["name"] == "local"]
    assert local["webhook_configs"][0]["http_config"] == {
        "authorization": {"type": "Bearer", "credentials_file": "/data/monitoring/alert-receiver.token"}}
