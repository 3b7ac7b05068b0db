"""nag-assets: NAG-based Ranking as a Dagster asset graph. `nag_assets.NagSelection` is the
Dagster component (imported on first use, so `nag_assets.nag` stays free of Dagster)."""


def __getattr__(name: str):
    if name == "NagSelection":
        from nag_assets.component import NagSelection

        return NagSelection
    raise AttributeError(f"module 'nag_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*globals(), "NagSelection"]
