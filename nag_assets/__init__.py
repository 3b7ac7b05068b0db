"""nag-assets: NAG-based Ranking as a Dagster asset graph.

    from nag_assets import read_mixture
    corpus = read_mixture("demo_root")  # the selection in force, as one polars table

`nag_assets.NagSelection` is the Dagster component; it, `read_mixture`, `Storage` and
`SelectionSettings` are imported on first use, so `nag_assets.nag` stays free of Dagster."""

_LAZY = {
    "NagSelection": "nag_assets.component",
    "read_mixture": "nag_assets.pipeline.mixture",
    "Storage": "nag_assets.storage",
    "SelectionSettings": "nag_assets.settings",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nag_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*globals(), *_LAZY]
