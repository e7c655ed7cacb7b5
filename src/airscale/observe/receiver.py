"""The bundled alert receiver: Alertmanager's webhook -> one JSON line per alert.

`python -m airscale.observe.receiver HOST PORT FILE TOKEN_FILE` accepts Alertmanager webhook
POSTs and appends each alert, with the time it arrived, to FILE (JSON lines), which
`airscale alerts tail` follows. It keeps no state, so a restart loses nothing written.

A POST must carry `Authorization: Bearer <token>`, the token in TOKEN_FILE (0600, which
Alertmanager reads through `credentials_file`): any local account can reach a loopback port,
and an alert it could forge would page people or hide among real ones.
"""

from __future__ import annotations

import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 4 * 1024 * 1024


def receiver_token(api_secret_key: str) -> str:
    """The receiver's token, derived from a cluster secret (so nothing new to keep)."""
    return hmac.new(api_secret_key.encode(), b"airscale alert receiver", "sha256").hexdigest()


def alert_lines(payload: dict, received_at: float) -> list[str]:
    """One JSON line per alert of an Alertmanager webhook payload (pure)."""
    lines = []
    for alert in payload.get("alerts", []):
        lines.append(json.dumps({
            "received_at": received_at,
            "status": alert.get("status"),
            "alertname": alert.get("labels", {}).get("alertname"),
            "severity": alert.get("labels", {}).get("severity"),
            "labels": alert.get("labels", {}),
            "annotations": alert.get("annotations", {}),
            "starts_at": alert.get("startsAt"),
            "ends_at": alert.get("endsAt"),
            "receiver": payload.get("receiver"),
        }, sort_keys=True))
    return lines


def authorized(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries the receiver's bearer token (pure)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def serve(host: str, port: int, out: Path, token: str) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            if not authorized(self.headers.get("Authorization"), token):
                self.send_error(401, "a bearer token is required")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self.send_error(400, "expected a JSON body")
                return
            try:
                payload = json.loads(self.rfile.read(length))
            except ValueError:
                self.send_error(400, "body is not JSON")
                return
            lines = alert_lines(payload, time.time())
            with lock, open(out, "a") as f:
                for line in lines:
                    f.write(line + "\n")
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"airscale alert receiver\n")

        def log_message(self, *args) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str]) -> None:
    host, port, out, token_file = argv[1], int(argv[2]), Path(argv[3]), Path(argv[4])
    out.parent.mkdir(parents=True, exist_ok=True)
    server = serve(host, port, out, token_file.read_text().strip())
    print(f"airscale alert receiver on {host}:{port}, writing {out}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
