from pathlib import Path

import pytest

from airscale.errors import AirscaleError
from airscale.spec import Ports, Spec, load_spec, parse_spec
from airscale.spec.example import example_spec


def test_defaults_describe_a_scale_cluster():
    spec = Spec()
    assert spec.cluster.profile.value == "scale"
    assert spec.schedulers.count == 2
    assert spec.cluster.listen_host == "127.0.0.1"
    assert list(spec.queues) == ["default"]


def test_every_field_has_a_description():
    def walk(model):
        for name, field in model.model_fields.items():
            if field.exclude:
                continue
            assert field.description, f"{model.__name__}.{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(Spec)


def test_example_round_trips_and_carries_comments():
    text = example_spec("demo")
    spec = parse_spec(text, Path("/tmp/x/airscale.yaml"))
    assert spec.cluster.name == "demo"
    assert "# Number of active schedulers" in text
    assert spec.data_path == Path("/tmp/x/.airscale/demo")


def test_relative_paths_resolve_against_the_spec_file(tmp_path):
    p = tmp_path / "sub" / "airscale.yaml"
    p.parent.mkdir()
    p.write_text("dags_folder: ../dags\ncluster: {data_dir: data}\n")
    spec = load_spec(p)
    assert spec.dags_path == tmp_path / "dags"
    assert spec.data_path == tmp_path / "sub" / "data"


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("cluster: [", "invalid YAML at line", id="invalid-yaml"),
        pytest.param("- a\n- b\n", "must be a mapping", id="not-a-mapping"),
        pytest.param("clustr: {}\n", "clustr: unknown field", id="unknown-top-field"),
        pytest.param("cluster: {nam: x}\n", "cluster.nam: unknown field", id="unknown-nested-field"),
        pytest.param("queues: {default: {min_workers: 3, max_workers: 2}}\n",
                     "queues.default: min_workers (3) is greater than max_workers (2)", id="min-above-max"),
        pytest.param("queues: {default: {concurrency: 0}}\n", "queues.default.concurrency", id="zero-concurrency"),
        pytest.param("queues: {}\n", "queues: define at least one queue", id="no-queues"),
        pytest.param("queues: {Bad_Name: {}}\n", "queues.Bad_Name", id="bad-queue-name"),
        pytest.param("cluster: {base_port: 80}\n", "cluster.base_port", id="privileged-port"),
        pytest.param("cluster: {profile: huge}\n", "cluster.profile", id="unknown-profile"),
        pytest.param("database: {url: 'mysql://x'}\n", "database.url: must be a PostgreSQL URL", id="not-postgres"),
        pytest.param("broker: {url: 'amqp://x'}\n", "broker.url: must be a Redis URL", id="not-redis"),
        pytest.param("schedulers: {count: 0}\n", "schedulers.count", id="no-scheduler"),
        pytest.param("airflow_config: {Core: {x: 1}}\n", "airflow_config", id="bad-config-section"),
        pytest.param("pools: {etl: 0}\n", "pools.etl", id="pool-without-slots"),
        pytest.param("pools: {'bad name': 4}\n", "pools.'bad name'", id="pool-name-with-space"),
    ],
)
def test_invalid_specs_name_the_field(text, expected):
    with pytest.raises(AirscaleError) as e:
        parse_spec(text, Path("bad.yaml"))
    assert expected in str(e.value)
    assert str(e.value).startswith("bad.yaml")


def test_missing_file_says_how_to_create_one(tmp_path):
    with pytest.raises(AirscaleError) as e:
        load_spec(tmp_path / "nope.yaml")
    assert "airscale init" in e.value.fix


def test_ports_are_distinct_and_inside_the_block():
    ports = Ports(30000)
    values = [getattr(ports, n) for n in dir(Ports) if isinstance(getattr(Ports, n), property)]
    values += [ports.worker_log_server(i) for i in range(40)]
    assert len(values) == len(set(values))
    assert all(30000 <= v < 30100 for v in values)


def test_two_clusters_100_apart_share_no_port():
    a, b = Ports(28080), Ports(28180)
    pa = {getattr(a, n) for n in dir(Ports) if isinstance(getattr(Ports, n), property)}
    pb = {getattr(b, n) for n in dir(Ports) if isinstance(getattr(Ports, n), property)}
    assert not pa & pb
