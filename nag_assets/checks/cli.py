"""`python -m nag_assets.checks CHECK --root ROOT`: one JSON object on stdout, progress on
stderr."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from nag_assets.checks import CHECKS
from nag_assets.checks import __doc__ as usage
from nag_assets.checks.agreement import agreement
from nag_assets.checks.deactivation import deactivation
from nag_assets.checks.stability import stability
from nag_assets.checks.variants import variants
from nag_assets.rankers import BASELINES
from nag_assets.storage import Storage


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nag_assets.checks",
        description=usage,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("check", choices=[*CHECKS, "all"])
    p.add_argument("--root", default=os.environ.get("NAG_ASSETS_ROOT", "demo_root"))
    p.add_argument("--fraction", type=float, default=0.2)
    p.add_argument("--seeds", type=int, default=3, help="stability, variants: subsets per size")
    p.add_argument("--sizes", default="25,50,100,200", help="stability: example counts")
    p.add_argument("--rankers", default=",".join(BASELINES), help="agreement: rankers")
    p.add_argument("--neurons", default="20", help="deactivation: neurons zeroed per layer")
    p.add_argument("--random-seeds", type=int, default=3, help="deactivation: random draws")
    p.add_argument("--examples", type=int, default=50, help="deactivation: held-out examples")
    p.add_argument("--ks", default="20,50", help="variants: K values above the stored K")
    p.add_argument("--max-docs", type=int, default=2000, help="variants: pool sample size")
    p.add_argument("--model", default=os.environ.get("NAG_MODEL", "embedded"))
    p.add_argument("--device", default=os.environ.get("NAG_DEVICE", "auto"))
    return p


def run(name: str, storage: Storage, args: argparse.Namespace, backbone=None) -> dict:
    if name == "stability":
        return stability(storage, _ints(args.sizes), args.seeds, args.fraction)
    if name == "agreement":
        return agreement(storage, args.fraction, args.rankers.split(","))
    if name == "variants":
        return variants(
            storage,
            backbone,
            args.fraction,
            _ints(args.ks),
            args.max_docs,
            seeds=args.seeds,
            progress=True,
        )
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    return deactivation(
        storage, backbone, _ints(args.neurons), args.random_seeds, args.examples, log=log
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    storage = Storage(args.root)
    names = CHECKS if args.check == "all" else (args.check,)
    backbone = None
    if {"variants", "deactivation"} & set(names):
        from nag_assets.nag import load_backbone

        backbone = load_backbone(args.model, device=args.device)
    results = {}
    for name in names:
        start = time.perf_counter()
        results[name] = run(name, storage, args, backbone)
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
    json.dump(results if len(results) > 1 else results[names[0]], sys.stdout, indent=1)
    print()
    return 0
