"""Reading the YAML of a spec or workload file, refusing what a careless or hostile file can do.

`yaml.safe_load` builds no objects beyond plain data, but it still accepts three things that
turn into wrong or runaway specs:

- Duplicate keys: the last one silently wins, so `cluster:` written twice loses the first
  block. The loader here refuses them, naming the key and both lines.
- Alias expansion ("billion laughs"): nine anchors that each repeat the previous nine times
  are a few hundred bytes of YAML, PyYAML shares the repeated objects, and the first code that
  walks the data (pydantic, a renderer) visits 9^9 of them: `render k8s` used 3 GB. The node
  graph is counted with every alias expanded, before anything is built, against a bound far
  above any real spec; ordinary anchors (`<<: *defaults`) stay well below it.
- Huge files: a spec is a few kilobytes; more than MAX_BYTES is refused before it is parsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from airscale.errors import AirscaleError

MAX_BYTES = 1024 * 1024
# Nodes of the document with every alias expanded; a large real spec has a few thousand.
MAX_NODES = 100_000


class DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key written twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            # Merge keys (`<<: *defaults`) may be overridden by the mapping's own keys.
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node, deep=False)
            if key in seen:
                raise DuplicateKeyError(
                    None, None,
                    f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1}); "
                    "the second would silently replace the first",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _expanded_nodes(root: yaml.Node, limit: int) -> int:
    """How many nodes the document has with aliases expanded, counting up to just past `limit`.
    An alias is the same node object as its anchor, so visiting it again counts its expansion."""
    count, stack = 0, [root]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack += (key, value)
    return count


def read_text(path: Path, what: str) -> str:
    """A YAML file's text, refused when larger than MAX_BYTES (read no further than that)."""
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise AirscaleError(f"{path}: the {what} is larger than {MAX_BYTES // 1024} KiB",
                            f"a {what} is a few kilobytes; check that {path} is the right file")
    return data.decode("utf-8")


def parse_yaml(text: str, source: str | Path, what: str) -> Any:
    """The data of one YAML document; invalid YAML, duplicate keys and alias bombs are
    `AirscaleError`s naming `source`, the line and the problem."""
    if len(text) > MAX_BYTES:
        raise AirscaleError(f"{source}: the {what} is larger than {MAX_BYTES // 1024} KiB")
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_nodes(node, MAX_NODES) > MAX_NODES:
            raise AirscaleError(
                f"{source}: the {what} expands to more than {MAX_NODES} values through YAML aliases (*name)",
                "write the values out, or use anchors only for small repeated blocks",
            )
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as e:
        raise AirscaleError(f"{source}: invalid YAML{_where(e)}: {_problem(e)}",
                            "fix the YAML syntax (indent with spaces, 'key: value' pairs, each key once)") from None
    finally:
        loader.dispose()


def _where(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    return "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"


def _problem(e: yaml.YAMLError) -> str:
    return getattr(e, "problem", None) or str(e).splitlines()[0]
