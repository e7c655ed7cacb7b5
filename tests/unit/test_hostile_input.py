"""Specs a careless or hostile user might write, through the CLI's entry point: each is refused with exit
code 2 and a message naming the field (or file), never a traceback, and nothing is written,
chmodded or deleted.

`down --purge` runs here on real temporary folders holding a canary file that must survive.
Those runs go through `guarded()`, where shutil.rmtree ends the process instead of deleting:
for `data_dir: /` and the like the refusal must come first, and if it ever did not, the test
fails without anything being deleted.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from airscale.errors import AirscaleError
from airscale.runtime import datadir, prereq
from airscale.runtime.layout import Layout
from airscale.spec import parse_spec
from airscale.spec.datadir import data_dir_problem
from airscale.spec.yamlfile import MAX_BYTES
from tests.conftest import REPO, airscale, airscale_in_process

# Every spec below also points the embedded PostgreSQL at a folder that does not exist: should a
# check ever let `up` through, it stops at the missing binaries before anything starts.
NO_PG = "database: {postgres_bin_dir: /nonexistent/pg/bin}\n"

# Runs the CLI with shutil.rmtree replaced by an exit (code 99), so a refusal that comes too late
# deletes nothing and fails the test.
GUARD = """
import shutil, sys
def _refuse(path, *a, **k):
    print(f"RMTREE CALLED ON {path}", file=sys.stderr)
    sys.exit(99)
shutil.rmtree = _refuse
from airscale.cli import main
sys.argv = ["airscale", *sys.argv[1:]]
main()
"""


def guarded(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", GUARD, *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def assert_refused(proc: subprocess.CompletedProcess, *expected: str) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text and "MarkupError" not in text, text
    for e in expected:
        assert e in text, f"{e!r} not in:\n{text}"


def bomb(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "airflow_config:\n  core:\n    x: 1\n" + "\n".join(lines) + "\n"


def receiver(**email_or_slack) -> str:
    return "monitoring:\n  receivers:\n  - " + json.dumps({"name": "ops", **email_or_slack}) + "\n"


EMAIL = {"to": "ops@example.com", "sender": "airflow@example.com", "smarthost": "smtp.example.com:587"}

# (spec text, what the message must name)
REFUSED = [
    # -- values that would break a generated file
    pytest.param('cluster: {listen_host: "127.0.0.1\\nbind 0.0.0.0"}\n', ["cluster.listen_host"],
                 id="listen-host-newline-adds-redis-directive"),
    pytest.param("cluster: {listen_host: \"127.0.0.1' port=1\"}\n", ["cluster.listen_host", "host name or IP"],
                 id="listen-host-quote-breaks-listen-addresses"),
    pytest.param('cluster: {listen_host: "host name"}\n', ["cluster.listen_host"], id="listen-host-space"),
    pytest.param('cluster: {listen_host: "localhost\\n"}\n', ["cluster.listen_host"], id="listen-host-trailing-newline"),
    pytest.param('cluster: {name: "abc\\n"}\n', ["cluster.name"], id="name-trailing-newline"),
    pytest.param('airflow_config: {"core\\n[x]": {a: 1}}\n', ["airflow_config", "not an Airflow config name"],
                 id="config-section-newline"),
    pytest.param('airflow_config: {"core\\n": {a: 1}}\n', ["airflow_config"], id="config-section-ends-in-newline"),
    pytest.param("airflow_config: {Core: {a: 1}}\n", ["airflow_config", "lower-case"], id="config-section-upper"),
    pytest.param('airflow_config: {core: {"a\\n[webserver]\\nb": 1}}\n', ["airflow_config.core"],
                 id="config-key-newline-adds-section"),
    pytest.param('airflow_config: {core: {"a = b": 1}}\n', ["airflow_config.core"], id="config-key-equals"),
    pytest.param('airflow_config: {core: {a: "x\\ny = z"}}\n', ["airflow_config.core.a", "newline"],
                 id="config-value-newline"),
    pytest.param("airflow_config: {core: {a: [1, 2]}}\n", ["airflow_config.core.a", "not a list"],
                 id="config-value-list"),
    pytest.param("airflow_config: {core: {a: {b: 1}}}\n", ["airflow_config.core.a", "not a dict"],
                 id="config-value-mapping"),
    pytest.param("airflow_config: {core: {a: %s}}\n" % ("x" * 5000), ["airflow_config.core.a", "at most"],
                 id="config-value-too-long"),
    pytest.param("airflow_config: {core: [a, b]}\n", ["airflow_config.core"], id="config-section-not-mapping"),
    pytest.param('tuning: {postgres: {"work_mem = 1\\nfsync": "off"}}\n', ["tuning.postgres"],
                 id="postgres-setting-name-newline"),
    pytest.param('tuning: {postgres: {work_mem: "16MB\\nfsync = off"}}\n', ["tuning.postgres.work_mem"],
                 id="postgres-setting-value-newline"),
    pytest.param('dags_folder: "dags\\n[x]"\n', ["dags_folder", "newline"], id="path-newline"),
    # -- URLs, addresses
    pytest.param('database: {url: "mysql://u:p@h/db"}\n', ["database.url", "postgresql://"], id="database-url-mysql"),
    pytest.param('database: {url: "postgresql://u:p@h/db\\nx"}\n', ["database.url"], id="database-url-newline"),
    pytest.param('database: {url: "postgresql:///db"}\n', ["database.url", "with a host"], id="database-url-no-host"),
    pytest.param('broker: {url: "http://h:6379/0"}\n', ["broker.url", "redis://"], id="broker-url-http"),
    pytest.param(receiver(slack={"api_url": "file:///etc/passwd"}), ["slack.api_url", "https://"],
                 id="slack-url-file-scheme"),
    pytest.param(receiver(webhook_urls=["gopher://h/x"]), ["webhook_urls"], id="webhook-url-gopher"),
    pytest.param(receiver(email={**EMAIL, "to": "ops@example.com\r\nBcc: all@example.com"}), ["email.to", "newline"],
                 id="email-to-crlf"),
    pytest.param(receiver(email={**EMAIL, "sender": "Ops <ops@example.com>"}), ["email.sender", "plain e-mail"],
                 id="email-sender-display-name"),
    pytest.param(receiver(email={**EMAIL, "smarthost": "smtp.example.com"}), ["email.smarthost", "host:port"],
                 id="smarthost-without-port"),
    pytest.param(receiver(email={**EMAIL, "smarthost": "smtp example:25"}), ["email.smarthost"],
                 id="smarthost-bad-host"),
    pytest.param(receiver(slack={"api_url": "https://hooks.example.com/x", "channel": "#a\nb"}),
                 ["slack.channel", "newline"], id="slack-channel-newline"),
    # -- Kubernetes rendering inputs
    pytest.param('kubernetes: {image_tag: "3.3.2 --privileged"}\n', ["kubernetes.image_tag"], id="k8s-image-tag-space"),
    pytest.param('kubernetes: {prometheus_url: "file:///x"}\n', ["kubernetes.prometheus_url"], id="k8s-prometheus-file"),
    pytest.param('kubernetes: {dags_git_repo: "file:///etc"}\n', ["kubernetes.dags_git_repo"], id="k8s-git-repo-file"),
    pytest.param('kubernetes: {prometheus_rule_labels: {release: "a\\nb"}}\n', ["kubernetes.prometheus_rule_labels"],
                 id="k8s-label-newline"),
    # -- people (auth.users): logins reach Airflow's user table, the audit log and the passwords file
    pytest.param('auth: {users: {"alice\\nbob": {role: User}}}\n', ["auth.users", "not a login"],
                 id="login-newline"),
    pytest.param("auth: {users: {Alice: {role: User}}}\n", ["auth.users", "lower-case"], id="login-upper-case"),
    pytest.param("auth: {users: {alice: {role: Root}}}\n", ["users.alice.role", "'Root' is not a role", "Admin, Op, User"],
                 id="role-unknown"),
    pytest.param('auth: {users: {alice: {role: User, email: "a@example.com\\r\\nBcc: x@example.com"}}}\n',
                 ["auth.users.alice.email"], id="user-email-crlf"),
    pytest.param("auth: {users: {admin: {role: Viewer}}}\n", ["auth", "admin", "keeps role Admin"],
                 id="admin-demoted"),
    pytest.param("auth: {users: {a: {role: User, email: x@example.com}, b: {role: Viewer, email: X@example.com}}}\n",
                 ["auth", "same e-mail"], id="users-share-email"),
    pytest.param("auth: {manager: simple, users: {alice: {role: User}}}\n", ["auth", "manager: fab"],
                 id="users-with-simple-auth-manager"),
    # -- sizes
    pytest.param("queues:\n" + "".join(f"  q{i}: {{}}\n" for i in range(65)), ["queues", "at most 64"],
                 id="too-many-queues"),
    # -- conflicting settings: neither silently wins
    pytest.param('ha: {database: {enabled: true}}\ndatabase: {url: "postgresql://u:p@db.example.com/a"}\n',
                 ["ha.database.enabled", "database.url"], id="ha-database-with-external-url"),
    pytest.param("cluster: {profile: dev}\nautoscaling: {enabled: true}\n", ["autoscaling.enabled", "dev"],
                 id="autoscaling-in-dev"),
    pytest.param('cluster: {profile: dev}\nbroker: {url: "redis://h:6379/0"}\n', ["broker.url", "dev"],
                 id="broker-url-in-dev"),
    pytest.param("tuning: {workload_file: nope.yaml}\n", ["tuning.workload_file", "nope.yaml", "does not exist"],
                 id="missing-workload-file"),
    # -- the YAML itself
    pytest.param("", ["is empty"], id="empty-file"),
    pytest.param("# only a comment\n", ["is empty"], id="comments-only"),
    pytest.param("- a\n- b\n", ["must be a mapping"], id="not-a-mapping"),
    pytest.param("cluster: {name: a}\ncluster: {name: b}\n", ["duplicate key 'cluster'", "line 2", "first at line 1"],
                 id="duplicate-top-level-key"),
    pytest.param("queues:\n  default: {max_workers: 2, max_workers: 9}\n", ["duplicate key 'max_workers'"],
                 id="duplicate-nested-key"),
    pytest.param(bomb(), ["expands to more than", "aliases"], id="alias-bomb"),
    pytest.param("a: &a [*a]\n", ["expands to more than"], id="recursive-alias"),
    pytest.param("# " + "x" * (MAX_BYTES + 10) + "\n", ["larger than 1024 KiB"], id="file-over-1-mib"),
    # -- spec text that looks like rich markup is printed as text
    pytest.param('queues: {"Bad[/a]": {}}\n', ["queues.'Bad[/a]'", "^[a-z][a-z0-9-]{0,30}$"],
                 id="markup-in-queue-name"),
    pytest.param('cluster: {name: "x[/a]"}\n', ["cluster.name", "^[a-z][a-z0-9-]{0,30}$"], id="markup-in-cluster-name"),
    pytest.param('cluster: {listen_host: "[bold]x[/bold]"}\n', ["'[bold]x[/bold]' is not a host name"],
                 id="markup-in-value-is-quoted-literally"),
]


@pytest.mark.parametrize("content, expected", REFUSED)
def test_validate_refuses(spec_dir: Path, content: str, expected: list[str]) -> None:
    path = spec_dir / "airscale.yaml"
    path.write_text(content)
    assert_refused(airscale_in_process("validate", str(path)), str(path), *expected)


@pytest.mark.parametrize("content, expected", [
    pytest.param(bomb(), ["expands to more than"], id="alias-bomb"),
    pytest.param('airflow_config: {"core\\n[x]": {a: 1}}\n', ["airflow_config"], id="config-section-newline"),
    pytest.param(receiver(slack={"api_url": "file:///etc/passwd"}), ["slack.api_url"], id="slack-url-file-scheme"),
])
def test_render_k8s_refuses_and_writes_nothing(spec_dir: Path, content: str, expected: list[str]) -> None:
    path = spec_dir / "airscale.yaml"
    path.write_text(content)
    out = spec_dir / "rendered"
    assert_refused(airscale_in_process("render", "k8s", "-o", str(out), "-s", str(path)), *expected)
    assert not out.exists()


def test_markup_in_the_spec_path_is_printed_literally(spec_dir: Path) -> None:
    folder = spec_dir / "x[" / "a]"  # the folders x[ and a]: the path reads .../x[/a]/...
    folder.mkdir(parents=True)
    path = folder / "airscale.yaml"
    path.write_text("cluster: {nmae: x}\n")
    assert_refused(airscale("validate", str(path)), f"{path}: invalid spec", "cluster.nmae")


def test_ordinary_anchors_still_work(spec_dir: Path) -> None:
    path = spec_dir / "airscale.yaml"
    path.write_text("queues:\n  default: &q {min_workers: 1, max_workers: 3}\n"
                    "  reports: {<<: *q, max_workers: 4}\n  batch: *q\n")
    proc = airscale("validate", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "reports (1-4 workers" in proc.stdout and "batch (1-3 workers" in proc.stdout


# -- data_dir -----------------------------------------------------------------------------------
def data_dir_cases() -> list:
    home = str(Path.home())
    return [
        pytest.param("/", "/ is a system folder", id="root"),
        pytest.param("/tmp", "/tmp is a system folder", id="tmp"),
        pytest.param("/etc", "/etc is a system folder", id="etc"),
        pytest.param("/usr/", "/usr is a system folder", id="usr-trailing-slash"),
        pytest.param("/var/tmp/../..", "/ is a system folder", id="dot-dot-to-root"),
        pytest.param(home, f"{home} is ", id="home"),  # /root for root: a system folder too
        pytest.param("~", "does not expand '~'", id="tilde"),
        pytest.param(".", "is the spec file's folder", id="spec-folder"),
        pytest.param("..", "holds the spec file's folder", id="parent-of-spec-folder"),
    ]


def spec_in_project(spec_dir: Path, data_dir: str) -> Path:
    """A spec in spec_dir/project, so that `..` is spec_dir (not /tmp)."""
    (spec_dir / "project").mkdir()
    path = spec_dir / "project" / "airscale.yaml"
    path.write_text(yaml.safe_dump({"cluster": {"data_dir": data_dir}}) + NO_PG)
    return path


@pytest.mark.parametrize("data_dir, expected", data_dir_cases())
def test_validate_refuses_a_dangerous_data_dir(spec_dir: Path, data_dir: str, expected: str) -> None:
    path = spec_in_project(spec_dir, data_dir)
    assert_refused(airscale_in_process("validate", str(path)), "cluster.data_dir", expected)


@pytest.mark.parametrize("data_dir, expected", data_dir_cases())
def test_down_purge_refuses_a_dangerous_data_dir(spec_dir: Path, data_dir: str, expected: str) -> None:
    canary = spec_dir / "canary.txt"
    canary.write_text("keep me")
    path = spec_in_project(spec_dir, data_dir)
    proc = guarded("down", "--purge", "-s", str(path))
    assert "RMTREE CALLED" not in proc.stderr
    assert_refused(proc, "cluster.data_dir", expected)
    assert canary.read_text() == "keep me"


def purge_case(spec_dir: Path, marker: dict | None) -> tuple[Path, Path]:
    """A spec whose data folder holds a canary file and the given marker (None: no marker)."""
    data = spec_dir / "data"
    data.mkdir()
    (data / "canary.txt").write_text("keep me")
    if marker is not None:
        (data / datadir.MARKER).write_text(json.dumps(marker))
    path = spec_dir / "airscale.yaml"
    path.write_text(yaml.safe_dump({"cluster": {"name": "mine", "data_dir": "data"}}) + NO_PG)
    return path, data


@pytest.mark.parametrize("marker, expected", [
    pytest.param(None, "has no .airscale-cluster file", id="unmarked-folder"),
    pytest.param({"cluster": "theirs", "id": "x"}, "belongs to cluster 'theirs', not 'mine'", id="other-clusters-folder"),
    pytest.param({"id": "x"}, "belongs to cluster None", id="marker-without-name"),
])
def test_down_purge_deletes_only_this_clusters_folder(spec_dir: Path, marker, expected: str) -> None:
    path, data = purge_case(spec_dir, marker)
    proc = guarded("down", "--purge", "-s", str(path))
    assert "RMTREE CALLED" not in proc.stderr
    assert_refused(proc, "down --purge refuses", str(data), expected, "nothing was stopped or deleted")
    assert (data / "canary.txt").read_text() == "keep me"


def test_down_purge_deletes_a_folder_marked_as_this_cluster(spec_dir: Path) -> None:
    path, data = purge_case(spec_dir, {"cluster": "mine", "id": "x"})
    proc = airscale("down", "--purge", "-s", str(path), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not data.exists()


@pytest.mark.parametrize("marker, expected", [
    pytest.param(None, "is not empty and was not made by airscale", id="unmarked-non-empty-folder"),
    pytest.param({"cluster": "theirs", "id": "x"}, "belongs to cluster 'theirs'", id="other-clusters-folder"),
])
def test_up_refuses_a_folder_that_is_not_this_clusters(spec_dir: Path, marker, expected: str) -> None:
    path, data = purge_case(spec_dir, marker)
    os.chmod(data, 0o700)
    before = sorted(p.name for p in data.iterdir())
    assert_refused(airscale("up", "-s", str(path), timeout=120), "cluster.data_dir", str(data), expected, "fix:")
    assert sorted(p.name for p in data.iterdir()) == before, "nothing may be written"
    assert data.stat().st_mode & 0o777 == 0o700, "the folder must not be chmodded"


# -- the pure decisions ---------------------------------------------------------------------------
@pytest.mark.parametrize("path, problem", [
    pytest.param("/srv/airscale/prod", None, id="own-folder-under-srv"),
    pytest.param("/tmp/x/.airscale/a", None, id="next-to-the-spec"),
    pytest.param("/home/u/projects/a/data", None, id="below-home"),
    pytest.param("/home", "system folder", id="home-root"),
    pytest.param("/home/u", "your home folder", id="home"),
    pytest.param("/tmp/x", "the spec file's folder", id="spec-folder"),
    pytest.param("/tmp/x/..", "system folder", id="normalised"),
])
def test_data_dir_problem(path: str, problem: str | None) -> None:
    got = data_dir_problem(Path(path), Path("/tmp/x"), Path("/home/u"))
    assert got is None if problem is None else problem in got


@pytest.mark.parametrize("marker, ok", [
    pytest.param({"cluster": "mine", "id": "1"}, True, id="this-cluster"),
    pytest.param({"cluster": "theirs", "id": "1"}, False, id="other-cluster"),
    pytest.param(None, False, id="no-marker"),
])
def test_purge_allowed(marker, ok: bool) -> None:
    assert datadir.purge_allowed(Path("/srv/a/data"), marker, "mine")[0] is ok
    assert datadir.purge_allowed(Path("/"), {"cluster": "mine"}, "mine") == (False, "/ is a system folder")


def test_up_marks_a_cluster_made_before_the_marker(tmp_path: Path) -> None:
    root = tmp_path / "old"
    (root / "state").mkdir(parents=True)
    (root / "secrets.json").write_text("{}")
    (root / "state" / "cluster-id").write_text("mine-abc\n")
    datadir.claim(Layout(root), "mine", tmp_path)
    assert datadir.read_marker(root)["cluster"] == "mine"
    datadir.check_purge(Layout(root), "mine", tmp_path)  # now purgeable
    with pytest.raises(AirscaleError, match="belongs to cluster 'mine'"):
        datadir.check_claimable(Layout(root), "other", tmp_path)


def test_up_marks_a_new_folder(tmp_path: Path) -> None:
    datadir.claim(Layout(tmp_path / "new" / "data"), "mine", tmp_path)
    marker = datadir.read_marker(tmp_path / "new" / "data")
    assert marker["cluster"] == "mine" and len(marker["id"]) == 32


def free_block() -> int:
    """A block of 100 ports below the kernel's ephemeral range (32768-60999 by default), where
    other programs' outgoing connections take ports at random; none of it in use now."""
    for base in range(20000, 28000, 100):
        try:
            for port in range(base, base + 100):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    pytest.skip("no free block of 100 ports between 20000 and 28000")


def test_a_port_in_use_anywhere_in_the_block_is_refused() -> None:
    base = free_block()
    spec = parse_spec(f"cluster: {{base_port: {base}}}\n", Path("/tmp/airscale-hostile/airscale.yaml"))
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Offset 37 belongs to no component: only another cluster's block overlapping this
        # one would put something there.
        s.bind(("127.0.0.1", base + 37))
        s.listen()
        with pytest.raises(AirscaleError, match=f"port {base + 37} .*another cluster's block may overlap"):
            prereq.check_ports(spec)
