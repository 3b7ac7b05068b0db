"""`python -m nag_assets.checks CHECK --root ROOT`: one JSON object on stdout, progress on
stderr."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

from nag_assets.checks import CHECKS
from nag_assets.checks import __doc__ as usage
from nag_assets.checks.dispatch import BACKBONE_CHECKS, DEFAULTS, CheckOptions, run_check
from nag_assets.storage import Storage


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def _csv(values) -> str:
    return ",".join(str(v) for v in values)


def parser() -> argparse.ArgumentParser:
    d = DEFAULTS
    p = argparse.ArgumentParser(
        prog="python -m nag_assets.checks",
        description=usage,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("check", choices=[*CHECKS, "all"])
    p.add_argument("--root", default=os.environ.get("NAG_ASSETS_ROOT", "demo_root"))
    p.add_argument("--fraction", type=float, default=d.fraction)
    p.add_argument("--seeds", type=int, default=d.seeds, help="stability, variants: subsets")
    p.add_argument("--sizes", default=_csv(d.sizes), help="stability: example counts")
    p.add_argument("--rankers", default=_csv(d.rankers), help="agreement: rankers")
    p.add_argument("--neurons", default=_csv(d.neurons), help="deactivation: neurons per layer")
    p.add_argument("--random-seeds", type=int, default=d.random_seeds, help="deactivation")
    p.add_argument("--examples", type=int, default=d.examples, help="deactivation: held-out")
    p.add_argument("--ks", default=_csv(d.ks), help="variants: K values above the stored K")
    p.add_argument("--max-docs", type=int, default=d.max_docs, help="variants: pool sample")
    p.add_argument("--model", default=os.environ.get("NAG_MODEL", "embedded"))
    p.add_argument("--device", default=os.environ.get("NAG_DEVICE", "auto"))
    return p


def options(args: argparse.Namespace) -> CheckOptions:
    """The parsed flags as the checks' options (batch size and max tokens: the defaults)."""
    return CheckOptions(
        fraction=args.fraction,
        seeds=args.seeds,
        sizes=_ints(args.sizes),
        rankers=tuple(r for r in args.rankers.split(",") if r),
        ks=_ints(args.ks),
        max_docs=args.max_docs,
        neurons=_ints(args.neurons),
        random_seeds=args.random_seeds,
        examples=args.examples,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    storage = Storage(args.root)
    names = CHECKS if args.check == "all" else (args.check,)
    opts = options(args)

    @functools.cache
    def backbone():
        from nag_assets.nag import load_backbone

        return load_backbone(args.model, device=args.device)

    if set(BACKBONE_CHECKS) & set(names):
        backbone()  # load errors before any check runs
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    results = {}
    for name in names:
        start = time.perf_counter()
        results[name] = run_check(name, storage, opts, backbone, progress=True, log=log)
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
    json.dump(results if len(results) > 1 else results[names[0]], sys.stdout, indent=1)
    print()
    return 0
