"""The headline figures of the checks that ran, as one Markdown table."""

from __future__ import annotations


def summary_md(results: dict) -> str:
    rows = []
    for t, r in results.get("stability", {}).get("jaccard_with_all_examples", {}).items():
        sizes = ", ".join(f"{n}: {v['mean']:.2f}" for n, v in r.items() if n != "examples")
        rows.append(f"| stability | {t} | Jaccard with all {r['examples']} examples: {sizes} |")
    for t, r in results.get("agreement", {}).get("jaccard", {}).items():
        pairs = ", ".join(f"{k[8:]}: {v:.2f}" for k, v in r.items() if k.startswith("nag_vs_"))
        rows.append(f"| agreement | {t} | NAG vs {pairs} (random floor {r['random_expected']}) |")
    for t, r in results.get("deactivation", {}).get("targets", {}).items():
        for k, v in r.items():
            if k.startswith("k="):
                own = ", ".join(
                    f"{n} +{x:.2f} (others' +{_mean(v['rise_other_targets_neurons'][n]):.2f})"
                    for n, x in v["rise_own_neurons"].items()
                )
                rows.append(
                    f"| deactivation | {t} | {k}: loss rise, own neurons: {own}; random "
                    f"+{v['rise_random_mean']:.3f} (max +{v['rise_random_max']:.3f}); base "
                    f"{r['loss_intact']:.3f} |"
                )
    for name, r in results.get("variants", {}).get("variants", {}).items():
        rows.append(
            f"| variants | {name} | {r['distinct_neurons_per_layer']} distinct neurons per "
            f"layer, top neuron in {r['top_neuron_share']:.0%} of NAGs; Jaccard with paper "
            f"{_mean(r['jaccard_with_paper']):.2f}, between targets "
            f"{r['between_targets_jaccard']} |"
        )
    return "| check | target / variant | figures |\n|---|---|---|\n" + "\n".join(rows)


def _mean(values: dict[str, float]) -> float:
    return sum(values.values()) / max(len(values), 1)
