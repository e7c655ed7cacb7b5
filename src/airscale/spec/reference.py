"""The spec's JSON Schema (for editors) and its field reference (docs/spec.md), from the models.

Both come from `Spec.model_json_schema()`, the schema pydantic derives from the models the
loader validates with, so neither can drift from what `airscale validate` accepts: a test
regenerates docs/spec.md and compares (tests/unit/test_spec_reference.py). The reference
walks that schema rather than the Python annotations: one walk covers nested models, maps of
models (`queues.<name>`), lists of models (`monitoring.receivers[]`) and optional models
alike, and types read the way the editor's schema shows them.

Fields the loader sets (`exclude=True`: base_dir, spec_file) are not part of the file's
format and are left out of both.
"""

from __future__ import annotations

import json
from typing import Any

from airscale.spec.models import Spec

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
REGENERATE = "airscale schema --markdown --out docs/spec.md"

Node = dict[str, Any]


def json_schema() -> Node:
    schema = Spec.model_json_schema()
    for name, field in Spec.model_fields.items():
        if field.exclude:
            schema["properties"].pop(name, None)
    schema["required"] = [r for r in schema.get("required", []) if r in schema["properties"]]
    return {"$schema": SCHEMA_DIALECT, **schema, "title": "airscale.yaml"}


def _deref(node: Node, defs: dict[str, Node]) -> Node:
    """`node` with its `$ref` followed; the referring node's own keys (description, default) win."""
    if "$ref" not in node:
        return node
    target = defs[node["$ref"].rsplit("/", 1)[-1]]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def _variants(node: Node, defs: dict[str, Node]) -> list[Node]:
    """The alternatives of an anyOf (a `X | None` field), null last; or the node itself."""
    if "anyOf" not in node:
        return [_deref(node, defs)]
    alts = [_deref(a, defs) for a in node["anyOf"]]
    return sorted(alts, key=lambda a: a.get("type") == "null")


def _map_values(node: Node) -> Node | None:
    """The schema of a map's values (`additionalProperties` or the one `patternProperties`)."""
    if isinstance(node.get("additionalProperties"), dict):
        return node["additionalProperties"]
    pattern = node.get("patternProperties") or {}
    return next(iter(pattern.values()), None)


def _is_model(node: Node) -> bool:
    return "properties" in node


def type_text(node: Node, defs: dict[str, Node]) -> str:
    """A short human reading of a field's schema: `integer (1..64)`, `list of string`, ..."""
    parts = []
    for alt in _variants(node, defs):
        parts.append(_one_type(alt, defs))
    return " or ".join(parts)


def _one_type(node: Node, defs: dict[str, Node]) -> str:
    if "enum" in node:
        return "one of " + ", ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    kind = node.get("type", "any")
    if _is_model(node):
        return "object"
    if kind == "array":
        return "list of " + type_text(node.get("items", {}), defs)
    if kind == "object":
        values = _map_values(node)
        return "map of name to " + (type_text(values, defs) if values else "any")
    if kind == "string" and node.get("format") == "path":
        kind = "path"
    bounds = _bounds(node)
    pattern = f" matching `{node['pattern']}`" if "pattern" in node else ""
    return kind + (f" ({bounds})" if bounds else "") + pattern


def _bounds(node: Node) -> str:
    low = ("≥ " + _num(node["minimum"])) if "minimum" in node else (
        ("> " + _num(node["exclusiveMinimum"])) if "exclusiveMinimum" in node else "")
    high = ("≤ " + _num(node["maximum"])) if "maximum" in node else (
        ("< " + _num(node["exclusiveMaximum"])) if "exclusiveMaximum" in node else "")
    return ", ".join(x for x in (low, high) if x)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def rows(schema: Node | None = None) -> list[tuple[str, str, str, str]]:
    """(path, type, default, description) for every field, depth first in declaration order."""
    schema = schema or json_schema()
    defs = schema.get("$defs", {})
    defaults = Spec().model_dump(mode="json")
    out: list[tuple[str, str, str, str]] = []

    def default_of(path: str, node: Node, required: bool) -> str:
        if required:
            return "required"
        if _is_model(_deref(node, defs)):
            return ""  # its fields' rows follow, each with its default
        if "default" in node:
            return json.dumps(node["default"])
        value: Any = defaults
        for key in path.split("."):  # a default_factory's value: read it off Spec()
            if not isinstance(value, dict) or key not in value:
                return ""
            value = value[key]
        return json.dumps(value)

    def walk(model: Node, prefix: str) -> None:
        required = set(model.get("required", []))
        for name, field in model["properties"].items():
            path = f"{prefix}{name}"
            description = field.get("description") or _deref(field, defs).get("description", "")
            out.append((path, type_text(field, defs), default_of(path, field, name in required), description))
            for alt in _variants(field, defs):
                if _is_model(alt):
                    walk(alt, path + ".")
                elif alt.get("type") == "array" and _is_model(_deref(alt.get("items", {}), defs)):
                    walk(_deref(alt["items"], defs), path + "[].")
                elif alt.get("type") == "object" and _map_values(alt) is not None \
                        and _is_model(_deref(_map_values(alt), defs)):
                    walk(_deref(_map_values(alt), defs), path + ".<name>.")

    walk(schema, "")
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """docs/spec.md: one table per top-level section."""
    lines = [
        "# The spec: airscale.yaml field reference",
        "",
        f"Generated from the spec's models by `{REGENERATE}`; do not edit by hand",
        "(a unit test fails when it is out of date). The same models give the JSON Schema",
        "(`airscale schema`) and the comments of `airscale init`.",
        "",
        "`<name>` stands for a key you choose (a queue's name); `[]` for each item of a list.",
    ]
    section = None
    for path, kind, default, description in rows():
        top = path.split(".", 1)[0].split("[", 1)[0]
        if top != section:
            section = top
            lines += ["", f"## {top}", "", "| field | type | default | description |", "|---|---|---|---|"]
        default_cell = f"`{_cell(default)}`" if default and default != "required" else default
        lines.append(f"| `{path}` | {_cell(kind)} | {default_cell} | {_cell(description)} |")
    return "\n".join(lines) + "\n"
