"""Reading a spec file, with errors that name the file, the field and the fix."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError

from airscale.errors import AirscaleError
from airscale.spec.auth import private_file_problem
from airscale.spec.datadir import FIX as DATA_DIR_FIX
from airscale.spec.datadir import data_dir_problem
from airscale.spec.models import Spec
from airscale.spec.yamlfile import parse_yaml, read_text

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    try:
        text = read_text(path, "spec file")
    except FileNotFoundError:
        raise AirscaleError(
            f"{path}: spec file not found", "create one with `airscale init` or pass --spec FILE"
        ) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise AirscaleError(f"{path}: cannot read the spec file ({e.__class__.__name__})") from None
    return parse_spec(text, path)


def parse_spec(text: str, path: Path) -> Spec:
    data = parse_yaml(text, path, "spec file")
    if data is None:
        # An empty file is more likely a truncated or wrong file than a wish for every default.
        raise AirscaleError(f"{path}: the spec file is empty",
                            "start from `airscale init`, or write at least `cluster: {name: NAME}`")
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
    spec = spec.model_copy(update={"base_dir": path.resolve().parent, "spec_file": path.resolve()})
    _check_paths(spec, path)
    return spec


def _check_paths(spec: Spec, path: Path) -> None:
    """What depends on where the spec lives: checked once base_dir is known."""
    problem = data_dir_problem(spec.data_path.resolve(), spec.base_dir, Path.home().resolve())
    if problem:
        raise AirscaleError(f"{path}: cluster.data_dir: {problem}; `airscale down --purge` would delete it",
                            DATA_DIR_FIX)
    workload = spec.tuning.workload_file
    if workload is not None and not spec.resolve(workload).is_file():
        raise AirscaleError(f"{path}: tuning.workload_file: {spec.resolve(workload)} does not exist",
                            "write the workload profile there (see examples/workload.yaml) or fix the path")
    ldap = spec.auth.ldap
    if ldap is not None:
        if problem := private_file_problem(spec.resolve(ldap.bind_password_file)):
            raise AirscaleError(f"{path}: auth.ldap.bind_password_file: {problem}",
                                "write the bind password into a file only you can read (chmod 600) and name it there")
        if ldap.ca_cert_file is not None and not spec.resolve(ldap.ca_cert_file).is_file():
            raise AirscaleError(f"{path}: auth.ldap.ca_cert_file: {spec.resolve(ldap.ca_cert_file)} does not exist",
                                "put the PEM certificate of the CA that signs the directory's certificate there")


def format_validation_error(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(_loc_part(p) for p in err["loc"] if not str(p).startswith("function-after"))
        if err["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown field; check its spelling against `airscale init`")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def _loc_part(p: object) -> str:
    # A mapping key of the spec is part of the path; one that is not a plain name (a newline,
    # markup) is quoted so the message shows exactly what was written.
    s = str(p)
    if s == "[key]":
        return "(name)"
    return s if _PLAIN_NAME.fullmatch(s) else repr(s)
