"""What is derived from the spec's models: the settings reference (`docs/settings.md`) and
the scaffolded `defs.yaml`. A test regenerates both and fails when they drift.

    python -m nag_assets.settings.reference > docs/settings.md
"""

from __future__ import annotations

import json
import textwrap

from nag_assets.settings import Section, env_name, is_deployment
from nag_assets.settings.spec import BLOCKS, SelectionSettings

HEADER = """# Settings

Generated from `nag_assets/settings/` by `python -m nag_assets.settings.reference`; do not edit.

A selection is one spec: the `NagSelection` component's `defs.yaml` (under `attributes:`), or
the same model in Python (`nag_assets.settings.SelectionSettings`, which the plain code
location builds in `nag_assets/definitions.py`). Every value is checked when the definitions
load (`dg check defs`, or loading the code location): a bad one fails naming its key and what
is allowed. A setting left unset takes its environment variable when it has one, then the
default. Automation and manual runs use the same spec; other mixture settings are only a
preview (`mixture_preview`).

**Per deployment** settings (marked *deployment*) say where things live and how to reach them:
give them as a value, or as `{env: NAME}` to have Dagster read the variable at run time (not
shown in the UI). The others shape the selection and are best written in the spec itself;
their environment variables serve the plain code location (`dagster dev -w workspace.yaml`).
"""


def _default(info) -> str:
    if info.default_factory is not None:
        value = info.default_factory()
        return "`demo_root/` in the checkout" if str(value).endswith("demo_root") else repr(value)
    return "unset" if info.default is None else json.dumps(info.default)


def _row(key: str, info) -> str:
    env = env_name(info)
    where = f"`{env}`" if env else ""
    if is_deployment(info):
        where = f"{where} *deployment*".strip()
    text = " ".join((info.description or "").split()).replace("|", "\\|")
    return f"| `{key}` | {text} | {_default(info)} | {where} |"


def _table(prefix: str, block: type[Section]) -> list[str]:
    rows = ["| key | what | default | environment |", "|---|---|---|---|"]
    for name, info in block.model_fields.items():
        rows.append(_row(f"{prefix}{name}", info))
    return rows


def markdown() -> str:
    """The settings reference: the top-level keys, then one table per block."""
    lines = [HEADER, "## Contents", ""]
    lines += ["- [Top level](#top-level)"]
    lines += [f"- [`{b.KEY}:`](#{b.KEY})" for b in BLOCKS]
    top = {n: i for n, i in SelectionSettings.model_fields.items() if n not in _blocks()}
    lines += ["", "## Top level", ""]
    lines += ["| key | what | default | environment |", "|---|---|---|---|"]
    lines += [_row(n, i) for n, i in top.items()]
    for block in BLOCKS:
        doc = " ".join((block.__doc__ or "").split())
        lines += ["", f"## {block.KEY}", "", doc, ""]
        lines += _table(f"{block.KEY}.", block)
    return "\n".join(lines) + "\n"


def _blocks() -> set[str]:
    return set(SelectionSettings.blocks())


def _yaml_value(value) -> str:
    return json.dumps(value) if not isinstance(value, str) or not value else value


def _commented(block: type[Section], given: dict) -> list[str]:
    """A block's settings, each with its meaning; those in `given` set, the rest commented."""
    out = [f"  {block.KEY}:"]
    for i, (name, info) in enumerate(block.model_fields.items()):
        doc = textwrap.wrap(" ".join((info.description or "").split()), 88)
        out += [f"    # {line}" for line in doc]
        if name in given:
            out.append(f"    {name}: {_yaml_value(given[name])}")
        elif info.default_factory is None:  # the first set, so the block is a mapping
            out.append(f"    {'' if i == 0 else '# '}{name}: {_yaml_value(info.default)}")
    return out


def scaffold_yaml(type_name: str, name: str, root: str, model: str, pool: str = "") -> str:
    """defs.yaml for a new selection: every setting of the spec, with its meaning; the name,
    root, shared NAG store, pool and model set, the rest at their defaults (commented)."""
    given = {
        "storage": {"root": root, "nag_store": "selections/nag_store"},
        "pool": {"path": pool} if pool else {},
        "backbone": {"model": model},
    }
    lines = [f"type: {type_name}", "attributes:", f"  name: {name}"]
    for block in BLOCKS:
        lines += _commented(block, given.get(block.KEY, {}))
    top = {n: i for n, i in SelectionSettings.model_fields.items() if n not in _blocks()}
    for field, info in top.items():
        if field != "name":
            lines += [f"  # {info.description}", f"  # {field}: {_yaml_value(info.default)}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
