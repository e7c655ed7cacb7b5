"""The spec's JSON Schema and docs/spec.md come from the models and stay current.

docs/spec.md is regenerated here and compared: a new or changed field fails this test until
the file is regenerated (the message says the command). The schema is checked against real
specs with jsonschema, the way an editor would use it.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from airscale.cli import app
from airscale.spec import reference
from airscale.spec.example import example_spec
from airscale.spec.models import Spec
from tests.conftest import REPO

SPEC_MD = REPO / "docs" / "spec.md"


def test_docs_spec_md_is_current():
    assert SPEC_MD.read_text() == reference.markdown(), (
        f"docs/spec.md is out of date with the spec's models; regenerate it: {reference.REGENERATE}")


def test_reference_lists_every_field_of_every_model():
    paths = {row[0] for row in reference.rows()}
    for expected in ("cluster.base_port", "queues.<name>.max_workers", "monitoring.runbook_base_url",
                     "monitoring.receivers[].slack.api_url", "tuning.workload.dags",
                     "monitoring.thresholds.disk_free_ratio", "airflow_config"):
        assert expected in paths
    assert not paths & {"base_dir", "spec_file"}
    # Every field of the top model and of the models under it has a row with a description.
    top = {p for p in paths if "." not in p}
    assert top == {n for n, f in Spec.model_fields.items() if not f.exclude}
    assert all(description for _, _, _, description in reference.rows())


def test_type_text_reads_the_schema():
    defs = {"P": {"enum": ["scale", "dev"], "type": "string"}}
    assert reference.type_text({"type": "integer", "minimum": 1, "maximum": 64}, defs) == "integer (≥ 1, ≤ 64)"
    assert reference.type_text({"anyOf": [{"type": "null"}, {"$ref": "#/$defs/P"}]}, defs) == \
        'one of "scale", "dev" or null'
    assert reference.type_text({"type": "array", "items": {"type": "string"}}, defs) == "list of string"


@pytest.fixture(scope="module")
def schema():
    return reference.json_schema()


def test_schema_leaves_out_what_the_loader_sets(schema):
    assert not set(schema["properties"]) & {"base_dir", "spec_file"}
    assert schema["$schema"] == reference.SCHEMA_DIALECT


@pytest.mark.parametrize("text", [
    pytest.param(example_spec("demo"), id="init-example"),
    pytest.param((REPO / "examples" / "airscale.yaml").read_text(), id="examples-airscale"),
])
def test_schema_accepts_real_specs(schema, text):
    jsonschema.validate(yaml.safe_load(text), schema)


@pytest.mark.parametrize("data", [
    pytest.param({"cluster": {"nmae": "x"}}, id="unknown-field"),
    pytest.param({"queues": {"default": {"max_workers": 0}}}, id="below-minimum"),
    pytest.param({"cluster": {"profile": "huge"}}, id="not-an-enum-value"),
])
def test_schema_rejects_what_the_loader_rejects(schema, data):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_schema_command_writes_the_schema_and_the_reference(tmp_path):
    result = CliRunner().invoke(app, ["schema", "--out", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s.json").read_text()) == reference.json_schema()
    result = CliRunner().invoke(app, ["schema", "--markdown"])
    assert result.exit_code == 0 and result.stdout == reference.markdown()
