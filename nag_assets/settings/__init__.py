"""The selection spec: every setting of a selection, declared, defaulted, validated and
documented here once (no Dagster). The component's YAML, the plain code location, the
resources, the environment fallbacks, the scaffolded `defs.yaml` and `docs/settings.md` are
all derived from these models (`reference.py`), so they cannot drift apart.

A value given in the spec (YAML or Python) wins over the environment variable named in the
field's `env`, which wins over the default. Fields marked `deployment` are what differs
between deployments (where things live, cluster addresses): they may also be given as
`{env: NAME}`, read by Dagster at run time and never shown in the UI."""

from __future__ import annotations

import operator
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nag_assets.sources.files import InputError


class SettingsError(InputError):
    """A setting with a bad value; the message names the YAML key or the variable."""


class FromEnv(BaseModel):
    """`{env: NAME}`: the value is read from the environment when a run needs it (Dagster's
    EnvVar): not shown in the UI, and free to differ per deployment."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    env: str = Field(description="environment variable name")


BOUNDS = {"ge": operator.ge, "gt": operator.gt, "le": operator.le}


def setting(default: Any, doc: str, env: str | None = None, deployment: bool = False, **kw):
    """A declared setting: its default, what it does, its environment variable, whether it
    is a per-deployment value (allowed as `{env: NAME}`), and its bounds (ge, gt, le: checked
    by `Section`, since Dagster's YAML schema takes no constrained types)."""
    bounds = {b: kw.pop(b) for b in BOUNDS if b in kw}
    extra: dict[str, Any] = {"env": env, "deployment": deployment, "bounds": bounds}
    if "default_factory" in kw:
        return Field(description=doc, json_schema_extra=extra, **kw)
    return Field(default=default, description=doc, json_schema_extra=extra, **kw)


def env_name(info) -> str | None:
    return (info.json_schema_extra or {}).get("env")


def is_deployment(info) -> bool:
    return bool((info.json_schema_extra or {}).get("deployment"))


class Section(BaseModel):
    """A block of the spec. Built in Python, a bad value raises a SettingsError naming the
    setting; inside the spec, pydantic names the YAML path. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    KEY: ClassVar[str] = ""  # the block's key in the spec (the YAML)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise SettingsError(explain(e, self.KEY)) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: Any):
        """The `given` settings over their environment variables over the defaults; a bad
        variable is named as coming from the environment."""
        environ = os.environ if environ is None else environ
        values = {}
        for name, info in cls.model_fields.items():
            var = env_name(info)
            if name in given or not var or not environ.get(var, "").strip():
                continue
            values[name] = parse_env(cls, name, var, environ[var])
        return cls(**(values | given))

    @model_validator(mode="after")
    def _bounds(self):
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            for bound, limit in ((info.json_schema_extra or {}).get("bounds") or {}).items():
                if value is not None and not BOUNDS[bound](value, limit):
                    sign = {"ge": ">=", "gt": ">", "le": "<="}[bound]
                    raise ValueError(f"{name} must be {sign} {limit} (given {value!r})")
        return self

    def given(self) -> dict[str, Any]:
        """The settings set explicitly (the rest fall back to the environment, then defaults)."""
        return {k: getattr(self, k) for k in self.model_fields_set}

    def resolved(self, environ: Mapping[str, str] | None = None):
        """This block with its unset settings taken from the environment."""
        return type(self).from_env(environ, **self.given())


def parse_env(cls: type[Section], name: str, var: str, raw: str) -> Any:
    """A variable's text as the setting's type (lists: comma-separated), or a SettingsError
    that says it came from the environment."""
    value: Any = raw.strip()
    annotation = str(cls.model_fields[name].annotation)
    if annotation.startswith(("list", "tuple")):
        value = [v.strip() for v in value.split(",") if v.strip()]
    try:
        cls.__pydantic_validator__.validate_assignment(cls.model_construct(), name, value)
    except ValidationError as e:
        msg = "; ".join(err["msg"] for err in e.errors())
        raise SettingsError(
            f"{var}={raw!r} (from the environment, setting {name}): {msg}"
        ) from None
    return value


def explain(e: ValidationError, prefix: str = "") -> str:
    """One line per bad setting: its dotted key, the value given, and what is allowed."""
    lines = []
    for err in e.errors():
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, SettingsError):  # a block's own message already names its keys
            lines.append(str(inner))
            continue
        key = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        msg = re.sub(r"^Value error, ", "", err["msg"])
        given = err.get("input")
        shown = "" if isinstance(given, dict) else f" (given {given!r})"
        lines.append(f"{key or 'settings'}: {msg}{shown}")
    return "; ".join(lines)


# The blocks, and the whole spec, follow (imported here so `nag_assets.settings` has them all).
from nag_assets.settings.sections import (  # noqa: E402
    BackboneSettings,
    ChecksSettings,
    DistilledScorerSettings,
    ExecutorSettings,
    MixtureSettings,
    PoolSettings,
    StorageSettings,
    TargetsSettings,
)
from nag_assets.settings.spec import SelectionSettings  # noqa: E402

__all__ = [
    "BackboneSettings",
    "ChecksSettings",
    "DistilledScorerSettings",
    "ExecutorSettings",
    "FromEnv",
    "MixtureSettings",
    "PoolSettings",
    "SelectionSettings",
    "SettingsError",
    "StorageSettings",
    "TargetsSettings",
]
