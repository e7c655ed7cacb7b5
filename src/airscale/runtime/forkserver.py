"""Warm worker starts: Celery workers forked from a process that has Airflow imported already.

A Celery worker spends most of its start-up (1.4 of 2.2 s on an idle host) starting Python and
importing Airflow, its CLI and Celery before it does anything of its own. The fork server
(component `worker-forkserver`, one per cluster host) pays that once: it imports the worker's
modules and waits on a unix socket (mode 0600). A worker's supervised command is the small
client (`forkserver run -- -m MODULE ARGS`): it hands the server its argv, environment,
directory and stdout/stderr, the server forks, and the child runs MODULE as `python -m` would.
Measured on an idle host: ready ~0.5 s after the request instead of 1.9-2.2 s cold.

The client stands in for the worker towards supervisord, so every component is still found,
stopped and restarted by name:
- stop signals sent to the client (TERM for a warm shutdown, INT, QUIT, HUP, USR1, USR2) are
  forwarded to the worker;
- the client exits with the worker's exit code, or dies of the same signal;
- if the client dies (SIGKILL, the group killed after `stopwaitsecs`), the server sees its
  connection close and SIGKILLs the worker's process group: nothing runs on unsupervised;
- `family(pid)` lists the worker's processes under its client's PID (drills, benchmarks).

Anything unexpected (no server, a refused or broken request, a server that imported something
that started a thread) makes the client exec the command itself: a cold start, as without
the fork server.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path

from airscale.runtime.layout import private_dir

log = logging.getLogger("airscale.runtime.forkserver")

# What a Celery worker of this cluster imports before its first task (found with
# `python -X importtime` on a cold start), in the order it does; the rest is under 30 ms each.
WORKER_PRELOAD = (
    "airflow",
    "airflow.__main__",
    "airflow.cli.cli_parser",
    "airflow.providers.celery.cli.celery_command",
    "airflow.providers.celery.executors.celery_executor_utils",
    "airflow.providers.celery.executors.celery_executor",
    "airflow.sdk.execution_time.task_runner",
    "airflow.models.dagbag",
    "airflow.dag_processing.dagbag",
    "airflow.serialization.serialized_objects",
    "airflow.utils.serve_logs",
    "celery.bin.celery",
    "celery.bin.worker",
    "celery.apps.worker",
    "celery.worker.consumer",
    "celery.concurrency.prefork",
    "kombu.transport.redis",
    "airscale.runtime.airflow_entry",
    "airscale.runtime.worker_dag_cache",
    "airscale.runtime.exit_wakeup",
)
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
HEADER = struct.Struct("!I")
CONNECT_TIMEOUT_S = 2.0
REPLY_TIMEOUT_S = 10.0
MAX_REQUEST = 4 << 20


def pid_file(socket_path: Path, client_pid: int) -> Path:
    """Where a client records the PID of the worker forked for it."""
    return socket_path.parent / f"forked-{client_pid}.pid"


def forked_pid(socket_path: Path, client_pid: int) -> int | None:
    try:
        return int(pid_file(socket_path, client_pid).read_text())
    except (OSError, ValueError):
        return None


def forked_map(socket_path: Path | None) -> dict[int, int]:
    """The fork server's records: worker pid -> client pid ({} without a fork server)."""
    forked: dict[int, int] = {}
    if socket_path is not None and socket_path.parent.is_dir():
        for f in socket_path.parent.glob("forked-*.pid"):
            try:
                forked[int(f.read_text())] = int(f.stem.split("-", 1)[1])
            except (OSError, ValueError):
                continue
    return forked


def family(pid: int, socket_path: Path | None = None, forked: Mapping[int, int] | None = None) -> list:
    """psutil processes of a supervised component: its process tree, where a worker's client
    stands for the worker forked for it (and the fork server for none of its workers).
    `forked` is `forked_map(socket_path)` read once by a caller that asks for many PIDs."""
    import psutil

    if forked is None:
        forked = forked_map(socket_path)
    try:
        roots = [psutil.Process(pid)]
    except psutil.NoSuchProcess:
        return []
    mine = next((w for w, c in forked.items() if c == pid), None)
    if mine is not None:
        try:
            roots.append(psutil.Process(mine))
        except psutil.NoSuchProcess:
            pass
    out, todo = [], list(roots)
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [c for c in p.children() if c.pid not in forked or c.pid == mine]
        except psutil.NoSuchProcess:
            continue
    return out


def refusal(request_env: dict[str, str], own_env: dict[str, str], config_then: str | None,
            config_now: str | None) -> str | None:
    """Why a worker must not be forked from this server (pure): the modules were imported
    with the server's Airflow configuration, so it must still be the worker's."""
    airflow_keys = {k for k in (*request_env, *own_env) if k.startswith(("AIRFLOW", "PYTHON"))}
    differing = sorted(k for k in airflow_keys if request_env.get(k) != own_env.get(k))
    if differing:
        return f"environment differs from the server's: {', '.join(differing)}"
    if config_then != config_now:
        return "airflow.cfg changed since the server imported it"
    return None


def config_digest(env: dict[str, str]) -> str | None:
    """A digest of the Airflow configuration file's content (`up` rewrites it unchanged)."""
    import hashlib

    path = env.get("AIRFLOW_CONFIG")
    if not path:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def exit_code(message: object) -> int:
    """A SystemExit's code as a process exit status (pure)."""
    if message is None:
        return 0
    if isinstance(message, int):
        return message & 0xFF
    print(message, file=sys.stderr)
    return 1


# -- server -------------------------------------------------------------------------------------
class Server:
    def __init__(self, socket_path: Path):
        self.path = socket_path
        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.children: dict[int, tuple[socket.socket, int, int]] = {}  # pidfd -> (conn, pid, client pid)
        self.conns: dict[socket.socket, int] = {}  # client conn -> worker pid
        self.stopping = False
        self.env = dict(os.environ)
        self.config = config_digest(self.env)

    def listen(self) -> None:
        private_dir(self.path.parent)
        self.path.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            self.listener.bind(str(self.path))
        finally:
            os.umask(old)
        self.listener.listen(16)
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")

    status = 0  # the exit status of `serve`

    def serve(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: setattr(self, "stopping", True))
        log.info("fork server ready on %s", self.path)
        while not self.stopping:
            for key, _ in self.sel.select(timeout=1.0):
                try:
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "child":
                        self._reap(key.fileobj)
                    else:
                        self._client_gone(key.fileobj)
                except Exception:  # noqa: BLE001 - one bad request must not end the server
                    log.exception("fork server: request failed")
        # Workers outlive the server: they are supervised through their clients.
        self.listener.close()
        self.path.unlink(missing_ok=True)
        return self.status

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(REPLY_TIMEOUT_S)
        try:
            req, fds = _recv_request(conn)
        except (OSError, ValueError) as e:
            log.warning("fork server: bad request (%s)", e)
            conn.close()
            return
        why = refusal(req.get("env", {}), self.env, self.config, config_digest(self.env))
        if why is None and threading.active_count() > 1:
            # A preloaded module started a thread: a fork would copy a half-held lock.
            why = "the server runs threads"
        if why is not None:
            log.warning("fork server: starting %s cold: %s", req.get("client_pid"), why)
            conn.sendall(f"REFUSED {why}\n".encode())
            conn.close()
            _close_all(fds)
            if why.startswith("airflow.cfg"):
                # Exit unexpectedly: the restart listener starts a server with the new config.
                self.stopping, self.status = True, 3
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            conn.close()
            self._become_worker(req, fds)
        _close_all(fds)
        try:
            os.setpgid(pid, pid)  # also done by the child: whichever runs first
        except OSError:
            pass
        pidfd = os.pidfd_open(pid)
        self.children[pidfd] = (conn, pid, int(req.get("client_pid") or 0))
        self.conns[conn] = pid
        self.sel.register(pidfd, selectors.EVENT_READ, "child")
        self.sel.register(conn, selectors.EVENT_READ, "client")
        conn.sendall(f"PID {pid}\n".encode())
        log.info("forked %s for client %s: %s", pid, req.get("client_pid"), " ".join(req["argv"][:4]))

    def _become_worker(self, req: dict, fds: list[int]) -> None:
        code = 1
        try:
            os.setpgid(0, 0)
            for sig in (*FORWARDED_SIGNALS, signal.SIGCHLD, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL if sig != signal.SIGPIPE else signal.SIG_IGN)
            self.sel.close()
            self.listener.close()
            for c in self.conns:
                c.close()
            for pidfd in self.children:
                os.close(pidfd)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(fds[0], 1)
            os.dup2(fds[1], 2)
            _close_all([null, *fds])
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update(req["env"])
            sys.argv = [req["module"], *req["argv"]]
            preloaded = sys.modules.get(req["module"])
            if callable(getattr(preloaded, "main", None)):
                # What its `if __name__ == "__main__"` does; runpy would execute it afresh.
                code = exit_code(preloaded.main())
            else:
                runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
                code = 0
        except SystemExit as e:
            code = exit_code(e.code)
        except BaseException:  # noqa: BLE001 - reported on the worker's own stderr
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _reap(self, pidfd: int) -> None:
        conn, pid, client_pid = self.children.pop(pidfd)
        self.sel.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        if forked_pid(self.path, client_pid) == pid:  # a killed client could not remove it
            pid_file(self.path, client_pid).unlink(missing_ok=True)
        self.conns.pop(conn, None)
        try:
            self.sel.unregister(conn)
            conn.sendall(f"EXIT {status}\n".encode())
        except (OSError, KeyError, ValueError):
            pass
        conn.close()

    def _client_gone(self, conn: socket.socket) -> None:
        """The client's connection closed (it died: SIGKILL, its group killed): the worker
        must not run on unsupervised."""
        try:
            data = conn.recv(64)
        except OSError:
            data = b""
        if data:
            return  # clients send nothing after the request; ignore stray bytes
        self.sel.unregister(conn)
        pid = self.conns.pop(conn, None)
        conn.close()
        if pid is not None:
            log.warning("client of worker %s is gone: killing the worker's process group", pid)
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    msg, fds, _, _ = socket.recv_fds(conn, HEADER.size, 2)
    if len(msg) != HEADER.size or len(fds) != 2:
        _close_all(fds)
        raise ValueError("expected a header and two file descriptors")
    (size,) = HEADER.unpack(msg)
    if size > MAX_REQUEST:
        _close_all(fds)
        raise ValueError(f"request of {size} bytes")
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            _close_all(fds)
            raise ValueError("request cut short")
        body += chunk
    return json.loads(body), fds


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def serve(socket_path: Path, preload: tuple[str, ...]) -> int:
    import importlib

    server = Server(socket_path)
    for mod in preload:
        try:
            importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 - a worker imports it itself, cold
            log.warning("fork server: could not preload %s (%s)", mod, e)
    server.listen()
    return server.serve()


# -- client -------------------------------------------------------------------------------------
def _exec(module: str, argv: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, "-m", module, *argv])


def run(socket_path: Path, module: str, argv: list[str]) -> int:
    """Run `python -m module argv` forked by the server (or exec'd here when it cannot be)."""
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT_S)
        sock.connect(str(socket_path))
        body = json.dumps({"module": module, "argv": argv, "env": dict(os.environ), "cwd": os.getcwd(),
                           "client_pid": os.getpid()}).encode()
        socket.send_fds(sock, [HEADER.pack(len(body))], [1, 2])
        sock.sendall(body)
        sock.settimeout(REPLY_TIMEOUT_S)
        replies = sock.makefile("rb")
        reply = replies.readline().decode().split()
        if reply[:1] != ["PID"]:
            raise OSError(f"server answered {' '.join(reply) or 'nothing'}")
        pid = int(reply[1])
    except (OSError, ValueError, IndexError) as e:
        print(f"airscale fork server not used ({e}): starting cold", file=sys.stderr, flush=True)
        _exec(module, argv)
        raise AssertionError("unreachable") from None
    record = pid_file(socket_path, os.getpid())
    record.write_text(str(pid))
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, lambda s, _f: _forward(pid, s))
    try:
        sock.settimeout(None)
        line = replies.readline().decode().split()
    finally:
        sock.close()
    record.unlink(missing_ok=True)
    if line[:1] == ["EXIT"]:
        code = os.waitstatus_to_exitcode(int(line[1]))
    else:
        # The server went away; the worker is no child of ours, so its status is unknown.
        code = _wait_unknown(pid)
    if code < 0:
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def _forward(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_unknown(pid: int) -> int:
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return 1
    try:
        while True:
            try:
                select.select([fd], [], [])
                return 1
            except InterruptedError:
                continue
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m airscale.runtime.forkserver", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="Import the worker's modules and fork workers on request.")
    s.add_argument("--socket", required=True, type=Path)
    s.add_argument("--preload", nargs="*", default=None, help="modules to import (default: a Celery worker's)")
    r = sub.add_parser("run", help="Run `python -m MODULE ARGS` forked by the server (cold if none).")
    r.add_argument("--socket", required=True, type=Path)
    r.add_argument("command", nargs=argparse.REMAINDER, help="-m MODULE ARGS...")
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return serve(args.socket, tuple(WORKER_PRELOAD if args.preload is None else args.preload))
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if len(cmd) < 2 or cmd[0] != "-m":
        ap.error("run takes -- -m MODULE ARGS...")
    return run(args.socket, cmd[1], cmd[2:])


if __name__ == "__main__":
    sys.exit(main())
