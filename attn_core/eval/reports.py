"""The one report writer: the plots, JSON, Markdown and CSV of an evaluation or a sweep. The CLI calls it through
:func:`run_eval` / :func:`run_sweep`; the app renders what it returns and never rewrites the files."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from attn_core.eval.edc import (
    THRESHOLD_MODE_SOURCES,
    THRESHOLD_MODE_WORDS,
    EDCCurve,
    edc_table_markdown,
    format_fmr,
    plot_edc,
)
from attn_core.eval.measure import RANDOM_WEIGHTS_NOTE, FileMeasures, slug

MODE_WORDS = {mode: f"threshold {words}" for mode, words in THRESHOLD_MODE_WORDS.items()}


def eval_markdown(summary: dict, curves: list[EDCCurve], plots: list[Path], fmrs: Sequence[float],
                   modes: Sequence[str]) -> str:
    pairs = summary["pairs"]
    lines = ["# ATTN-FIQA evaluation: Error-versus-Discard Characteristic", ""]
    lines += [f"- Data: {summary['data']}",
              f"- Pairs: {pairs['used']} used ({pairs['genuine']} genuine, {pairs['impostor']} impostor) of "
              f"{pairs['total']}; {pairs['dropped']} dropped because {len(summary['failed_files'])} file(s) could "
              f"not be used",
              f"- Matcher: {summary['matcher']['name']} (distance arccos(cosine)/\u03c0)",
              "- Quality models: " + "; ".join(f"{m['label']} (weights {m['weights']}, block {m['block']}, heads "
                                               f"{m['heads']}, {m['aggregation']}, {m['tokens']} tokens)"
                                               for m in summary["quality_models"]),
              "- Baselines: " + ", ".join(summary["baselines"]),
              f"- Pair quality = min of the two; discard r = 0 \u2026 {summary['protocol']['discard'][-1]:g}; "
              f"pAUC up to r = {summary['protocol']['pauc_limit']:g} (\u00d710\u00b3 in the tables); lower is better",
              f"- Threshold modes: *{THRESHOLD_MODE_WORDS['per_fraction']}* ({THRESHOLD_MODE_SOURCES['per_fraction']}, "
              f"trapezoid areas) and *{THRESHOLD_MODE_WORDS['fixed']}* ({THRESHOLD_MODE_SOURCES['fixed']}, stepwise areas)", ""]
    if summary["warnings"]:
        lines += ["## Warnings", ""] + [f"- **{w}**" for w in summary["warnings"]] + [""]
    plot_by_name = {p.name: p for p in plots}
    for fmr in fmrs:
        for mode in modes:
            group = [c for c in curves if c.fmr == fmr and c.threshold_mode == mode]
            lines += [f"## FMR {format_fmr(fmr)}, {MODE_WORDS[mode]}", "", edc_table_markdown(group).rstrip(), ""]
            name = f"edc_fmr{format_fmr(fmr)}_{mode}.png"
            if name in plot_by_name:
                lines += [f"![EDC at FMR {format_fmr(fmr)}, {MODE_WORDS[mode]}]({name})", ""]
    lines += ["## Against random discard", ""]
    lines += [f"- {v}" for v in summary["verdicts"]] or ["- Every method beats random discard at every FMR and threshold mode."]
    lines.append("")
    if summary["failed_files"]:
        lines += ["## Files not used", ""] + [f"- `{f['path']}`: {f['reason']}" for f in summary["failed_files"]] + [""]
    cache = summary["cache"]
    lines += [f"Cache {cache['dir']}: {cache['hits']} hits, {cache['embeddings_computed']} embeddings and "
              f"{cache['scores_computed']} scores computed; total {summary['timings_s']['total_s']:.1f} s.", ""]
    return "\n".join(lines)


def path_namer(data: Any, data_name: str | None, file_names: dict[Path, str]) -> Callable[[Any], str]:
    """How reports write a file's path: as given, or (with ``data_name``) by the user's name for it or relative to
    the data folder."""
    if data_name is None or not isinstance(data, (str, os.PathLike)):
        return str
    root = Path(data) if Path(data).is_dir() else Path(data).parent

    def name(path: Any) -> str:
        if Path(path) in file_names:
            return file_names[Path(path)]
        try:
            return str(Path(path).relative_to(root))
        except ValueError:
            return str(path)

    return name


def write_file_scores(path: Path, files: Sequence[Path], records: dict[Path, FileMeasures], labels: list[str],
                       name: Callable[[Any], str] = str) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "sha256", *labels, "error"])
        for file in files:
            record = records[file]
            writer.writerow([name(file), record.digest, *(f"{record.quality[l]:.6g}" if l in record.quality else ""
                                                          for l in labels), (record.error or "").replace(str(file), name(file))])



def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)  # no pyplot: no global state, safe from the app's worker threads
    return figure


def plot_score_vs_strength(rows: list[dict], label: str, names: Sequence[str], levels: Sequence[float], path: Path,
                           note: str = "") -> Path:
    column = f"score:{label}"
    cols = min(5, len(names))
    grid_rows = math.ceil(len(names) / cols)
    figure = new_figure(3.0 * cols, 2.6 * grid_rows + 0.6)
    for index, name in enumerate(names):
        axes = figure.add_subplot(grid_rows, cols, index + 1)
        per_face: dict[int, list[float]] = {}
        for row in rows:
            if row["degradation"] == name:
                per_face.setdefault(row["file_index"], []).append(row[column])
        for values in per_face.values():
            axes.plot(levels, values, color="0.75", linewidth=0.8)
        means = np.mean(np.array(list(per_face.values())), axis=0)
        axes.plot(levels, means, color="C0", marker="o", markersize=3, linewidth=2, label="mean over faces")
        axes.set_title(name, fontsize=9)
        axes.set_xlabel("strength", fontsize=8)
        axes.tick_params(labelsize=7)
        if index % cols == 0:
            axes.set_ylabel("quality score", fontsize=8)
    figure.suptitle(f"{label}: score vs degradation strength (grey: each face)" + (f"\n{note}" if note else ""),
                    fontsize=10, color="#b91c1c" if note else "black")
    figure.tight_layout()
    figure.savefig(path)
    return path


def plot_score_vs_utility(rows: list[dict], label: str, names: Sequence[str], threshold: float | None, path: Path,
                          note: str = "") -> Path:
    column = f"score:{label}"
    figure = new_figure(6.4, 4.8)
    axes = figure.add_subplot(1, 1, 1)
    for index, name in enumerate(names):
        subset = [r for r in rows if r["degradation"] == name and not r["clean"]]
        axes.scatter([r["utility"] for r in subset], [r[column] for r in subset], s=10, alpha=0.7,
                     color=f"C{index % 10}", label=name)
    clean = [r for r in rows if r["clean"] and r["degradation"] == names[0]]
    axes.scatter([r["utility"] for r in clean], [r[column] for r in clean], s=30, marker="*", color="k", label="clean")
    if threshold is not None:
        axes.axvline(threshold, color="r", linestyle="--", linewidth=1, label=f"matcher threshold {threshold:g}")
    axes.set_xlabel("recognition utility (matcher cosine to the clean crop)")
    axes.set_ylabel("quality score")
    axes.set_title(f"{label}: score vs recognition utility" + (f"\n{note}" if note else ""), fontsize=10,
                   color="#b91c1c" if note else "black")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path)
    return path


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def sweep_markdown(summary: dict, plots: list[Path]) -> str:
    lines = ["# ATTN-FIQA degradation sweep", "",
             f"- Faces: {summary['faces']}; failed files: {len(summary['failed_files'])}",
             f"- Degradations: {', '.join(summary['degradations'])}; strengths: "
             f"{', '.join(f'{s:g}' for s in summary['strengths'])}; seed {summary['seed']}",
             f"- Matcher: {summary['matcher']['name']}; utility = {summary['utility']}; failure = {summary['failure']}",
             ""]
    if summary["warnings"]:
        lines += ["## Warnings", ""] + [f"- **{w}**" for w in summary["warnings"]] + [""]
    for label, result in summary["results"].items():
        lines += [f"## {label}", "",
                  f"Pooled: Spearman(score, utility) = {fmt(result['spearman_score_utility_pooled'])}; "
                  f"failure-flagging ROC AUC (low score flags) = {fmt(result['failure_auc_pooled'])} "
                  f"({result['failures_pooled'] if result['failures_pooled'] is not None else 'n/a'} failures). "
                  "Expected signs: Spearman with strength negative, with utility positive; AUC above 0.5.", "",
                  "| Degradation | Spearman(score, strength) | Spearman(score, utility) | Failures | Failure AUC |",
                  "|---|---|---|---|---|"]
        for name, entry in result["per_degradation"].items():
            lines.append(f"| {name} | {fmt(entry['spearman_score_strength'])} | {fmt(entry['spearman_score_utility'])} "
                         f"| {entry['failures'] if entry['failures'] is not None else 'n/a'} | {fmt(entry['failure_auc'])} |")
        lines.append("")
        for plot in plots:
            if plot.stem.endswith(slug(label)):
                lines += [f"![{plot.stem}]({plot.name})", ""]
    if summary["failed_files"]:
        lines += ["## Files not used", ""] + [f"- `{f['path']}`: {f['reason']}" for f in summary["failed_files"]] + [""]
    return "\n".join(lines)




def write_eval_report(out_dir: str | Path, summary: dict[str, Any], curves: list[EDCCurve],
                      plot_groups: Sequence[tuple[str, list[EDCCurve]]], plot_title: str, fmrs: Sequence[float],
                      modes: Sequence[str], files: Sequence[Path], records: dict[Path, FileMeasures],
                      labels: list[str], name: Callable[[Any], str] = str,
                      plot_notes: dict[str, list[str]] | None = None) -> tuple[str, Path, Path, list[Path]]:
    """Write an evaluation's plots, ``eval.json``, ``eval.md`` and ``eval_files.csv``; return (markdown, markdown
    path, JSON path, plot paths)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_paths = []
    for file_name, group in plot_groups:
        plot_edc(group, out_dir / file_name, plot_title, (plot_notes or {}).get(file_name, ()))
        plot_paths.append(out_dir / file_name)
    markdown = eval_markdown(summary, curves, plot_paths, fmrs, modes)
    json_path, markdown_path = out_dir / "eval.json", out_dir / "eval.md"
    json_path.write_text(json.dumps(summary, indent=1))
    markdown_path.write_text(markdown)
    write_file_scores(out_dir / "eval_files.csv", files, records, labels, name)
    return markdown, markdown_path, json_path, plot_paths


def write_sweep_report(out_dir: str | Path, rows: list[dict[str, Any]], summary: dict[str, Any], labels: Sequence[str],
                       names: Sequence[str], levels: Sequence[float], threshold: float | None
                       ) -> tuple[str, Path, Path, Path, list[Path]]:
    """Write a sweep's plots (two per quality method), ``sweep.csv``, ``sweep.json`` and ``sweep.md``; return
    (markdown, markdown path, JSON path, CSV path, plot paths). Adds the plot names to ``summary``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_paths: list[Path] = []
    random_labels = {m["label"] for m in summary.get("quality_models", []) if str(m.get("weights", "")).startswith("random")}
    for label in labels:
        note = RANDOM_WEIGHTS_NOTE if label in random_labels else ""
        plot_paths.append(plot_score_vs_strength(rows, label, names, levels, out_dir / f"sweep_strength_{slug(label)}.png",
                                                 note))
        plot_paths.append(plot_score_vs_utility(rows, label, names, threshold, out_dir / f"sweep_utility_{slug(label)}.png",
                                                note))
    summary["plots"] = [p.name for p in plot_paths]
    csv_path, json_path, markdown_path = out_dir / "sweep.csv", out_dir / "sweep.json", out_dir / "sweep.md"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps(summary, indent=1))
    markdown = sweep_markdown(summary, plot_paths)
    markdown_path.write_text(markdown)
    return markdown, markdown_path, json_path, csv_path, plot_paths


def write_threshold_report(out_dir: str | Path, goals: Sequence[Any]) -> Path:
    """``threshold.json``: a goal read off the EDC (``attn-fiqa eval --target-fnmr/--discard``), one entry per FMR."""
    path = Path(out_dir) / "threshold.json"
    path.write_text(json.dumps([goal.to_dict() for goal in goals], indent=1))
    return path
