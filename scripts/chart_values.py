"""Write (or, with --check, verify) every chart's values.yaml and values.schema.json, and the README
sections the bridge charts share.

Both come from one pydantic model per chart (`scripts/chart_models/<chart>.py`): each field's type,
default and comment are declared once, the parts several charts share once in
`chart_models/common.py`. The schema is pydantic's, made self-contained (no `$ref`: helm resolves
them against the working directory) and strict (every object refuses unknown keys), so a typo in
values fails `helm lint`/`install` at once. values.yaml holds every default, each field's
description as the comment above its key. The README sections every bridge chart shares are written
once in scripts/chart_docs/ (chart_readme.py fills them in).
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chart_models.base import OMIT
from chart_models.bridge import BridgeValues
from chart_readme import bridge_facts, generated

from matrix_stack.services.catalog import charts

CHARTS = Path(__file__).resolve().parent.parent / "charts"
# Every service chart of the catalog, and the synapse chart; each chart's model is
# chart_models.<chart>.<Chart>Values (webhook: WebhookValues).
MODELS = [*charts(), "synapse"]
Schema = dict[str, Any]


class _NoDefaults(GenerateJsonSchema):
    """Defaults live in values.yaml; the schema only says what is allowed."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> Schema:
        return self.generate_inner(schema["schema"])


def model(chart: str) -> type[BaseModel]:
    module = importlib.import_module("chart_models." + chart.replace("-", "_"))
    found: type[BaseModel] = getattr(module, "".join(part.title() for part in chart.split("-")) + "Values")
    return found


# --- the schema ---

_TYPE_KEYS = {"type", "description"}


def _merge_any_of(node: Schema) -> Schema:
    """pydantic writes `int | None` as anyOf; a list of types with their own constraints is the same
    and reads as the schema always did."""
    branches = node["anyOf"]
    if not all(isinstance(b.get("type"), str) for b in branches):
        return node
    keys = [set(b) - _TYPE_KEYS for b in branches]
    if any(keys[i] & keys[j] for i in range(len(keys)) for j in range(i + 1, len(keys))):
        return node
    merged: Schema = {k: v for k, v in node.items() if k != "anyOf"}
    merged["type"] = [b["type"] for b in branches]
    for branch in branches:
        merged.update({k: v for k, v in branch.items() if k not in _TYPE_KEYS})
    return merged


def _clean(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, list):
        return [_clean(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    out: Schema = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key == "additionalProperties" and value is True:
            continue  # a free map: any keys, as JSON Schema's default
        if key == "properties":
            out[key] = {name: _clean(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _clean(value, defs)
    if "anyOf" in out:
        out = _merge_any_of(out)
    return out


def schema(chart: str) -> Schema:
    raw = model(chart).model_json_schema(schema_generator=_NoDefaults)
    defs = raw.pop("$defs", {})
    return {"$schema": "https://json-schema.org/draft-07/schema#", **_clean(raw, defs)}


# --- values.yaml ---


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return {
            (field.alias or name): _plain(getattr(value, name))
            for name, field in type(value).model_fields.items()
            if getattr(value, name) is not OMIT
        }
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20, allow_unicode=True).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _comment(text: str | None, indent: str) -> list[str]:
    if not text:
        return []
    return [(indent + "# " + line).rstrip() for line in text.splitlines()]


def _emit(instance: BaseModel, depth: int) -> list[str]:
    indent = "  " * depth
    lines: list[str] = []
    for name, field in type(instance).model_fields.items():
        value = getattr(instance, name)
        if value is OMIT:
            continue
        key = field.alias or name
        if depth == 0 and lines:
            lines.append("")
        lines += _comment(field.description, indent)
        if isinstance(value, BaseModel):
            inner = _emit(value, depth + 1)
            lines += [f"{indent}{key}:", *inner] if inner else [f"{indent}{key}: {{}}"]
            continue
        plain = _plain(value)
        if isinstance(plain, (dict, list)) and plain:
            block = yaml.safe_dump(
                plain, default_flow_style=False, sort_keys=False, width=1 << 20, allow_unicode=True
            )
            lines.append(f"{indent}{key}:")
            lines += [f"{indent}  {line}" for line in block.splitlines()]
        else:
            lines.append(f"{indent}{key}: {_flow(plain)}")
    return lines


def values_yaml(chart: str) -> str:
    cls = model(chart)
    module = "scripts/chart_models/" + chart.replace("-", "_") + ".py"
    head = [f"# Generated from {module} by scripts/chart_values.py: edit there, not here."]
    if cls.__doc__:
        head += ["#", *_comment(inspect.cleandoc(cls.__doc__), "")]
    return "\n".join([*head, "", *_emit(cls(), 0)]) + "\n"


def outputs() -> dict[Path, str]:
    out: dict[Path, str] = {}
    for chart in MODELS:
        out[CHARTS / chart / "values.schema.json"] = json.dumps(schema(chart), indent=2) + "\n"
        out[CHARTS / chart / "values.yaml"] = values_yaml(chart)
        cls = model(chart)
        if issubclass(cls, BridgeValues):
            readme = CHARTS / chart / "README.md"
            out[readme] = generated(readme.read_text(), bridge_facts(chart, cls))
    return out


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for path, text in outputs().items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("stale (run python scripts/chart_values.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
