"""The asset graph's work as plain functions over a Storage root (no Dagster imports).

Each step computes the version its output would have, skips the work when the stored output
already carries that version, and otherwise writes the output atomically with the version in
the file's footer. So a rerun is idempotent and a crash leaves nothing half-done.
"""
