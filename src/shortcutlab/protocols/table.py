"""A benchmark's table: ours (mean ± std over seeds) beside the published number.

For every method and conflicting ratio: our mean and standard deviation over the seeds
that finished, the published number, the difference, and whether the published number
lies within two of our standard deviations (``within 2 std``; with one seed there is no
spread, so no verdict). Rows also say how many seeds finished or failed, and the mean
wall time of a run. Numbers are percentages.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shortcutlab.artifacts import write_bytes, write_json
from shortcutlab.figures import save_figure
from shortcutlab.protocols.protocol import Protocol

BIAS, METHOD, SEED = "data.bias", "train.algorithm", "train.seed"


def collect(spec: Any, out: Path, storage: str | None) -> list[dict[str, Any]]:
    """Every trial of the benchmark's sweep study as a row (empty when none ran yet)."""
    from shortcutlab.errors import ShortcutlabError
    from shortcutlab.sweep.export import load_study, trial_rows
    from shortcutlab.sweep.runner import resolve_paths

    paths = resolve_paths(spec, output=out, storage=storage)
    try:
        study = load_study(paths.storage, spec.study)
    except ShortcutlabError:
        return []
    rows, _, _ = trial_rows(study)
    return rows


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarize(protocol: Protocol, rows: list[dict[str, Any]], methods: Sequence[str],
              ratios: Sequence[float], seeds: Sequence[int]) -> dict[str, Any]:
    """The table's cells, one per (method, ratio)."""
    cells = []
    for method in methods:
        published = protocol.published_for(method)
        for ratio in ratios:
            mine = [row for row in rows if row.get(METHOD) == method
                    and math.isclose(float(row.get(BIAS, -1)), 1.0 - ratio, abs_tol=1e-9)
                    and row.get(SEED) in seeds]
            done = [row for row in mine if row["state"] == "COMPLETE"]
            values = [100.0 * float(row["value"]) for row in done]
            mean, std = _mean_std(values)
            paper = published.at(protocol.ratios, ratio) if published else None
            within = None
            if paper is not None and mean is not None and std is not None:
                within = abs(mean - paper) <= 2 * std
            second = [100.0 * float(row[protocol.second_metric]) for row in done
                      if protocol.second_metric and isinstance(
                          row.get(protocol.second_metric), int | float)]
            second_mean, second_std = _mean_std(second)
            seconds = [float(row["train_seconds"]) for row in done
                       if isinstance(row.get("train_seconds"), int | float)]
            cells.append({
                "method": method, "ratio": ratio, "seeds": len(done),
                "failed": sum(row["state"] == "FAIL" for row in mine),
                "values": values, "mean": mean, "std": std, "published": paper,
                "difference": None if paper is None or mean is None else mean - paper,
                "within_2_std": within,
                "second_mean": second_mean, "second_std": second_std,
                "second_difference": None if paper is None or second_mean is None
                else second_mean - paper,
                "train_seconds": sum(seconds) / len(seconds) if seconds else None,
            })
    others = [{"method": row.method, "label": row.label, "values": list(row.values),
               "source": row.source, "bias_labels": row.bias_labels,
               "selection": row.selection}
              for row in protocol.published]
    return {"cells": cells, "published": others, "uses": {m: method_uses(m) for m in methods},
            "second_metric": protocol.second_metric,
            "second_metric_text": protocol.second_metric_text}


def method_uses(method: str) -> list[str]:
    """What a method of ours uses beyond images and labels (the registry's ``uses``);
    plain ERM (``erm``, not an intervention of the registry) uses nothing."""
    from shortcutlab.intervene.registry import get_method

    return ["none"] if method == "erm" else list(get_method(method).uses)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_markdown(table: dict[str, Any]) -> str:
    ratios = table["ratios"]
    lines = [
        f"**{table['title']}** (`{table['protocol']}`): {table['paper']}; code "
        f"{table['code']}.",
        "",
        f"Metric: {table['metric_text']} (`{table['metric']}`). Checkpoint: "
        f"{table['selection']}. Input scaling `{table['scaling']}`: {table['scaling_text']}. "
        f"Budget: {table['epochs']:g} epochs. Seeds {', '.join(map(str, table['seeds']))}.",
        "",
    ]
    second = table.get("second_metric")
    header = ("| method | conflicting | ours (mean ± std) | seeds | published | ours - published "
              "| published within 2 std |")
    rule = "|---|---|---|---|---|---|---|"
    if second:
        header += " ours, second metric | second - published |"
        rule += "---|---|"
    lines += [header + " s per run |", rule + "---|"]
    for cell in table["cells"]:
        ours = "-" if cell["mean"] is None else (
            f"{cell['mean']:.2f} ± {cell['std']:.2f}" if cell["std"] is not None
            else f"{cell['mean']:.2f} (one seed)")
        seeds = str(cell["seeds"]) + (f" (+{cell['failed']} failed)" if cell["failed"] else "")
        verdict = {True: "yes", False: "no", None: "-"}[cell["within_2_std"]]
        diff = "-" if cell["difference"] is None else f"{cell['difference']:+.2f}"
        extra = ""
        if second:
            theirs = "-" if cell.get("second_mean") is None else (
                f"{cell['second_mean']:.2f} ± {cell['second_std'] or 0.0:.2f}")
            gap = ("-" if cell.get("second_difference") is None
                   else f"{cell['second_difference']:+.2f}")
            extra = f" {theirs} | {gap} |"
        lines.append(f"| {cell['method']} | {100 * cell['ratio']:g}% | {ours} | {seeds} | "
                     f"{_num(cell['published'], 2)} | {diff} | {verdict} |{extra} "
                     f"{_num(cell['train_seconds'], 0)} |")
    if second:
        lines += ["", f"Second metric: {table.get('second_metric_text')} (`{second}`)."]
    if table.get("uses"):
        from shortcutlab.intervene.registry import USES

        lines += ["", "What each of our methods uses beyond images and labels: " + "; ".join(
            f"`{method}`: " + ", ".join(USES.get(kind, kind) for kind in kinds)
            for method, kinds in table["uses"].items()) + "."]
    lines += ["", "Published numbers (%) at conflicting "
              + " / ".join(f"{100 * r:g}%" for r in ratios) + ":", ""]
    for row in table["published"]:
        lines.append(f"- {row['label']} (bias labels: {row['bias_labels']}; checkpoint: "
                     f"{row['selection']}): {' / '.join(f'{v:g}' for v in row['values'])}. "
                     f"Source: {row['source']}.")
    if table["deviations"]:
        lines += ["", "Deviations from the original:", ""]
        lines += [f"- {text}" for text in table["deviations"]]
    return "\n".join(lines) + "\n"


def render_csv(table: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    keys = ["method", "ratio", "seeds", "failed", "mean", "std", "published", "difference",
            "within_2_std", "second_mean", "second_std", "second_difference", "train_seconds"]
    writer.writerow(keys)
    for cell in table["cells"]:
        writer.writerow(["" if cell.get(key) is None else cell[key] for key in keys])
    return buffer.getvalue()


def plot(path: Path, table: dict[str, Any]) -> None:
    """Ours (error bars: std over seeds) and the published numbers, against the ratio."""
    from shortcutlab.figures import headless

    headless()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, method in enumerate(table["methods"]):
        color = colors[index % len(colors)]
        cells = [c for c in table["cells"] if c["method"] == method and c["mean"] is not None]
        if cells:
            ax.errorbar([100 * c["ratio"] for c in cells], [c["mean"] for c in cells],
                        yerr=[c["std"] or 0.0 for c in cells], color=color, marker="o",
                        capsize=3, label=f"{method} (ours)")
        paper = [c for c in table["cells"] if c["method"] == method
                 and c["published"] is not None]
        if paper:
            ax.plot([100 * c["ratio"] for c in paper], [c["published"] for c in paper],
                    color=color, ls="--", marker="x", label=f"{method} (published)")
    ax.set_xscale("log")
    ax.set_xticks([100 * r for r in table["ratios"]], [f"{100 * r:g}%" for r in table["ratios"]])
    ax.set_xlabel("bias-conflicting training images")
    ax.set_ylabel(f"{table['metric']}, %")
    ax.set_title(f"{table['title']}: ours vs published", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path, tight=False)


def write_table(out: Path, table: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(out / "table.md", render_markdown(table).encode())
    write_bytes(out / "table.csv", render_csv(table).encode())
    write_json(out / "table.json", {**table, "written": time.time()})
    plot(out / "table.png", table)
