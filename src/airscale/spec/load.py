"""Reading a spec file, with errors that name the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from airscale.errors import AirscaleError
from airscale.spec.models import Spec


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise AirscaleError(
            f"{path}: spec file not found", "create one with `airscale init` or pass --spec FILE"
        ) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise AirscaleError(f"{path}: cannot read the spec file ({e.__class__.__name__})") from None
    return parse_spec(text, path)


def parse_spec(text: str, path: Path) -> Spec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise AirscaleError(
            f"{path}: invalid YAML{where}: {problem}",
            "fix the YAML syntax (indent with spaces, 'key: value' pairs)",
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise AirscaleError(
            f"{path}: the spec must be a mapping of sections (cluster, queues, ...), "
            f"not a {type(data).__name__}",
            "start from `airscale init`",
        )
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise AirscaleError(f"{path}: invalid spec\n" + format_validation_error(e)) from None
    return spec.model_copy(update={"base_dir": path.resolve().parent, "spec_file": path.resolve()})


def format_validation_error(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        if err["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown field; check its spelling against `airscale init`")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {loc or '(top level)'}: {msg}")
    return "\n".join(lines)
