"""Watching the targets/ and shards/ folders: what was added, changed or removed."""

from __future__ import annotations

from dataclasses import dataclass, field

from nag_assets.sources.files import is_input_file
from nag_assets.storage import Storage, UnsafeKeyError, partition_key


@dataclass
class Scan:
    """One look at a folder, against what the previous look saw (`seen`)."""

    seen: dict[str, dict] = field(default_factory=dict)  # key -> name, signature, version
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # file name -> why


def scan(storage: Storage, folder: str, previous: dict[str, dict]) -> Scan:
    """Hash only files whose signature (size+mtime, or ETag) moved: a touch costs a hash, a
    content change costs a hash and a request, an unchanged file costs nothing."""
    out = Scan()
    source = storage.inputs(folder)
    for f in source.list_inputs():
        if not is_input_file(f.name):
            out.rejected[f.name] = "not a .parquet, .jsonl, .jsonl.gz or .json file"
            continue
        try:
            key = partition_key(f.name)
        except UnsafeKeyError as e:
            out.rejected[f.name] = str(e)
            continue
        if key in out.seen:
            out.rejected[f.name] = f"same partition key {key!r} as {out.seen[key]['name']}"
            continue
        prev = previous.get(key)
        if prev and prev["name"] == f.name and prev["signature"] == f.signature:
            version = prev["version"]
        else:
            version = source.content_version(f)
        out.seen[key] = {"name": f.name, "signature": f.signature, "version": version}
        if prev is None:
            out.added.append(key)
        elif prev["version"] != version:
            out.changed.append(key)
    out.removed = sorted(set(previous) - set(out.seen))
    return out
