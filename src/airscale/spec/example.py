"""`airscale init`: a commented example spec, written from the models themselves.

Each field's description becomes the comment above it, so the example can never drift from
what the loader accepts (a test loads the output back).
"""

from __future__ import annotations

import textwrap
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from airscale.spec.models import QueueSpec, Spec

HEADER = """\
# airscale.yaml: one file describes the whole cluster; everything else is derived from it.
# Validate with `airscale validate -s airscale.yaml`, start with `airscale up -s airscale.yaml`.
"""


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    if value is None:
        return "null"
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, 92 - len(indent))]


def _emit(model: BaseModel, indent: str = "") -> list[str]:
    out: list[str] = []
    for name, field in type(model).model_fields.items():
        if field.exclude:
            continue
        value = getattr(model, name)
        if field.description:
            out += _comment(field.description, indent)
        if isinstance(value, BaseModel):
            out.append(f"{indent}{name}:")
            out += _emit(value, indent + "  ")
        elif isinstance(value, dict) and value and all(isinstance(v, BaseModel) for v in value.values()):
            out.append(f"{indent}{name}:")
            for key, sub in value.items():
                out.append(f"{indent}  {key}:")
                out += _emit(sub, indent + "    ")
        else:
            out.append(f"{indent}{name}: {_scalar(value)}")
        out.append("") if not indent else None
    return out


def example_spec(name: str = "airscale") -> str:
    spec = Spec.model_validate(
        {
            "cluster": {"name": name, "data_dir": f".airscale/{name}"},
            "queues": {"default": QueueSpec().model_dump()},
        }
    )
    return HEADER + "\n" + "\n".join(_emit(spec)).rstrip() + "\n"
