"""What `airscale up` quotes from the log of a component that keeps exiting at start."""

import pytest

from airscale.runtime.cluster import _tail, last_error_line

TRACEBACK = """Traceback (most recent call last):
  File "/usr/bin/patroni", line 33, in <module>
  File "/usr/lib/python3.11/socketserver.py", line 472, in server_bind
    self.socket.bind(self.server_address)
OSError: [Errno 98] Address already in use
"""


@pytest.mark.parametrize(
    "text, said",
    [
        pytest.param(TRACEBACK, "OSError: [Errno 98] Address already in use", id="python-traceback"),
        pytest.param(TRACEBACK + "\n\n", "OSError: [Errno 98] Address already in use", id="trailing-blank-lines"),
        pytest.param("starting\n2026-12-07 FATAL:  data directory has wrong ownership\nexiting\n",
                     "2026-12-07 FATAL:  data directory has wrong ownership", id="postgres-fatal"),
        pytest.param("error: cannot open config\n", "error: cannot open config", id="lowercase-error"),
        pytest.param("starting\nlistening\n", "listening", id="no-error-the-last-line"),
        pytest.param("\n  \n", None, id="blank"),
        pytest.param("", None, id="empty"),
        pytest.param("ValueError: " + "x" * 300, "ValueError: " + "x" * 188, id="cut-to-200"),
    ],
)
def test_last_error_line(text, said):
    assert last_error_line(text.splitlines()) == said


def test_tail_reads_the_end_of_a_log(tmp_path):
    log = tmp_path / "pg-1.log"
    log.write_text("old line\n" * 5000 + TRACEBACK)
    lines = _tail(log)
    assert lines[-1] == "OSError: [Errno 98] Address already in use"
    assert len(lines) < 5000  # only its last bytes
    assert _tail(tmp_path / "missing.log") == []
