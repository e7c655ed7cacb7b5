"""The exporter renders one scrape at a time: requests that pile up behind a slow collector
share its result instead of each rendering (and holding) a copy."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from airscale.observe.exporter import OneScrapeAtATime, serve_metrics


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def get(app, path="/metrics", query="", gzip=True, method="GET"):
    seen = {}
    body = b"".join(app({"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                         "HTTP_ACCEPT_ENCODING": "gzip" if gzip else ""},
                        lambda status, headers, exc=None: seen.update(status=status, headers=headers)))
    return seen["status"], body


def counting_app(clock, step=1.0):
    calls = []

    def app(environ, start_response):
        calls.append(environ["PATH_INFO"])
        clock.now += step  # a render takes time
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"render {len(calls)}".encode()]
    return app, calls


@pytest.mark.parametrize("second, renders", [
    # (what the second request asks, renders after both, one after the other)
    ({}, 2),  # asked after the first finished: a new render, never an older answer
    ({"path": "/other"}, 2),
    ({"query": "name[]=x"}, 2),
    ({"gzip": False}, 2),
    ({"method": "HEAD"}, 2),
])
def test_a_request_after_a_render_gets_a_new_one(second, renders):
    clock = Clock()
    inner, calls = counting_app(clock)
    app = OneScrapeAtATime(inner, clock=clock)
    assert get(app) == ("200 OK", b"render 1")
    assert get(app, **second)[1] == b"render 2"
    assert len(calls) == renders and app.renders == renders


def test_requests_that_wait_for_a_render_share_its_result():
    release, started = threading.Event(), threading.Event()
    renders = []

    def slow(environ, start_response):
        renders.append(1)
        started.set()
        release.wait(10)
        start_response("200 OK", [])
        return [b"the one render"]

    asked = []  # each request reads the clock once as it arrives (the render once more)

    def clock():
        asked.append(1)
        return time.monotonic()

    app = OneScrapeAtATime(slow, clock=clock)
    answers = []
    first = threading.Thread(target=lambda: answers.append(get(app)))
    first.start()
    assert started.wait(5)
    waiters = [threading.Thread(target=lambda: answers.append(get(app))) for _ in range(4)]
    for w in waiters:
        w.start()
    deadline = time.monotonic() + 10
    while len(asked) < 5 and time.monotonic() < deadline:  # every waiter has arrived
        time.sleep(0.01)
    release.set()
    for t in [first, *waiters]:
        t.join(5)
    assert answers == [("200 OK", b"the one render")] * 5
    assert len(renders) == 1


class SlowCollector:
    def __init__(self):
        self.calls = 0
        self.release = threading.Event()

    def describe(self):
        return []

    def collect(self):
        self.calls += 1
        self.release.wait(10)
        g = GaugeMetricFamily("airscale_test_value", "a value")
        g.add_metric([], self.calls)
        yield g


def test_the_exporter_serves_piled_up_scrapes_from_one_collection():
    registry, slow = CollectorRegistry(), SlowCollector()
    registry.register(slow)
    httpd = serve_metrics(registry, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/metrics"
        bodies: list[str] = []
        threads = [threading.Thread(target=lambda: bodies.append(httpx.get(url, timeout=10).text)) for _ in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(
                "process_request" in t.name for t in threading.enumerate()) < 3:
            time.sleep(0.01)
        time.sleep(1.0)  # each request thread has read its request and waits on the render
        slow.release.set()
        for t in threads:
            t.join(10)
        assert len(bodies) == 3 and len(set(bodies)) == 1
        assert "airscale_test_value 1.0" in bodies[0]
        assert slow.calls == 1
        # A later scrape collects again. Prometheus asks for OpenMetrics and gzip; on loopback it
        # gets the classic text format, which renders in half the CPU, uncompressed.
        r = httpx.get(url, timeout=10, headers={
            "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            "Accept-Encoding": "gzip"})
        assert "airscale_test_value 2.0" in r.text
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "content-encoding" not in r.headers
    finally:
        httpd.shutdown()
        httpd.server_close()


RENDER_LOOP = r"""
import threading
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

class Many:
    def collect(self):
        g = GaugeMetricFamily("airflow_task_duration_seconds_bucket", "x", labels=["dag_id", "task_id", "le"])
        for i in range(40_000):
            g.add_metric([f"dag_{i // 60:04d}", f"task_{i % 60}", str(i % 21)], float(i))
        yield g

registry = CollectorRegistry()
registry.register(Many())

def rss_kib():
    return next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmRSS"))

kept, seen = None, []
for _ in range(4):  # as the server does: the last body kept, each render in a thread of its own
    t = threading.Thread(target=lambda: globals().__setitem__("kept", generate_latest(registry)))
    t.start(); t.join()
    seen.append(rss_kib())
print(len(kept) // 1024, max(seen[2:]) - seen[1])
"""


def test_scrape_buffers_go_back_to_the_system_with_the_exporters_environment():
    """The exporter's component environment keeps glibc from holding freed render buffers
    (measured against glibc's default in the same test, so the check can fail)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from airscale.observe.stack import EXPORTER, monitoring_components
    from airscale.runtime.layout import Layout
    from airscale.spec import Spec

    comps = {c.name: c for c in monitoring_components(Spec.model_validate({}), Layout(Path("/tmp/x")), [])}
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}

    def growth(env):
        out = subprocess.run([sys.executable, "-c", RENDER_LOOP], env=env, capture_output=True, text=True,
                             check=True, timeout=120).stdout.split()
        return int(out[0]), int(out[1])  # (KiB of one body, KiB grown after the first renders)

    body, default_growth = growth(base)
    _, set_growth = growth({**base, **comps[EXPORTER].env})
    assert default_growth >= 1.5 * body, "glibc's default no longer holds render buffers: the setting may be moot"
    assert set_growth <= body, (body, default_growth, set_growth)
