"""The fault tests share the asset-graph fixtures (tiny model folder, Wikipedia pool)."""

from nag_assets_tests.defs.conftest import tiny_model_dir, wiki_pool  # noqa: F401
