"""Tables and plots of bench results: ``results.md``, accuracy against pruning ratio and against
pruning cost. Method order and colours come from the grid's method list, so the same results
always give the same table and the same picture."""

from __future__ import annotations

import os

import numpy as np

from . import io

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f", "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173", "#3182bd", "#e6550d", "#31a354",
           "#756bb1", "#636363"]
MARKERS = "osD^vP*Xh<>p"


def method_order(rows: list[dict], methods: list[str] | None = None) -> list[str]:
    """The methods of ``rows`` in the grid's order (others after, sorted), without ``full``."""
    present = {r["method"] for r in rows} - {"full"}
    listed = [m for m in (methods or []) if m in present]
    return listed + sorted(present - set(listed))


def style(method: str, methods: list[str]) -> dict:
    """Colour and marker of a method: by its position in the grid's list, random always grey dashed."""
    if method == "random":
        return {"color": "#555555", "marker": "o", "ls": "--"}
    i = methods.index(method) if method in methods else abs(hash(method)) % len(PALETTE)
    return {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[i % len(MARKERS)], "ls": "-"}


def summarize(rows: list[dict], key: str = "test_acc") -> dict:
    """``{(method, ratio): (mean, std, count)}`` of ``key`` over seeds (NaNs left out)."""
    cells: dict = {}
    for r in rows:
        v = float(r.get(key, float("nan")))
        if v == v:
            cells.setdefault((r["method"], float(r["ratio"])), []).append(v)
    return {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in cells.items()}


def _pm(mean: float, std: float, count: int) -> str:
    """``mean ± std`` in %, or the mean alone for a single seed (whose spread is unknown, not zero)."""
    return f"{100 * mean:.1f}" if count < 2 else f"{100 * mean:.1f} ± {100 * std:.1f}"


def markdown_table(rows: list[dict], methods: list[str] | None = None, key: str = "test_acc") -> str:
    """Methods as rows, pruning ratios as columns, mean ± std (%) over seeds, then the pruning cost
    (mean ``cost_fraction``: surrogate + scoring, in full-data training runs) and, under label
    noise, the share of mislabelled samples kept."""
    summary = summarize(rows, key)
    cost = summarize(rows, "cost_fraction")
    kept = summarize(rows, "kept_mislabelled")
    ratios = sorted({r for (m, r) in summary if m != "full"})
    order = method_order(rows, methods)
    noisy = any(m != "full" for (m, _r) in kept)
    head = "| method | " + " | ".join(f"ratio {r:g}" for r in ratios) + " | pruning cost |" + \
        (" mislabelled kept |" if noisy else "")
    lines = [head, "|---|" + "---|" * (len(ratios) + 1 + int(noisy))]
    for m in order:
        cells = []
        for r in ratios:
            mean, std, cnt = summary.get((m, r), (float("nan"),) * 3)
            cells.append("-" if cnt != cnt else _pm(mean, std, cnt))
        costs = [cost[(m, r)][0] for r in ratios if (m, r) in cost]
        cells.append(f"{np.mean(costs):.2f}" if costs else "-")
        if noisy:
            shares = [kept[(m, r)][0] for r in ratios if (m, r) in kept]
            cells.append(" / ".join(f"{100 * s:.1f}" for s in shares) + " %" if shares else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    out = "\n".join(lines) + "\n"
    if ("full", 0.0) in summary:
        mean, std, cnt = summary[("full", 0.0)]
        full_rows = [r for r in rows if r["method"] == "full"]
        cpu = any(r.get("cost_clock") == "cpu" for r in full_rows)
        secs = [float(r["train_cpu_seconds" if cpu else "train_seconds"]) for r in full_rows]
        out += (f"\nFull data (ratio 0): {_pm(mean, std, cnt)} (n={cnt}); one full-data training run "
                f"took {np.mean(secs):.1f} s{' of CPU time' if cpu else ''}, the unit of the pruning cost.\n")
    return out


def difference_table(rows: list[dict], methods: list[str] | None = None, baseline: str = "random",
                     key: str = "test_acc") -> str:
    """Mean difference to ``baseline`` (percentage points) per method and ratio, paired by seed."""
    by = {(r["method"], float(r["ratio"]), int(r["seed"])): float(r[key]) for r in rows}
    ratios = sorted({k[1] for k in by if k[0] != "full"})
    lines = ["| method | " + " | ".join(f"ratio {r:g}" for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
    for m in method_order(rows, methods):
        if m == baseline:
            continue
        cells = []
        for r in ratios:
            d = [v - by[(baseline, r, s)] for (mm, rr, s), v in by.items() if mm == m and rr == r
                 and (baseline, r, s) in by]
            cells.append(f"{100 * np.mean(d):+.1f}" if d else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _figure(n_methods):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.6 if n_methods > 4 else 6.4, 4.6), dpi=110)
    return plt, fig, ax


def plot_accuracy_vs_ratio(rows: list[dict], path: str, title: str = "", methods: list[str] | None = None,
                           key: str = "test_acc") -> None:
    """Accuracy vs pruning ratio, one line per method, error bars = std over seeds."""
    summary = summarize(rows, key)
    order = method_order(rows, methods)
    plt, fig, ax = _figure(len(order))
    for m in order:
        pts = sorted((r, v) for (mm, r), v in summary.items() if mm == m)
        st = style(m, order)
        lw = 2.4 if m == "random" or m.startswith(("moso", "recommended")) else 1.3
        ax.errorbar([p[0] for p in pts], [100 * p[1][0] for p in pts], yerr=[100 * p[1][1] for p in pts],
                    marker=st["marker"], ms=4, lw=lw, capsize=3, color=st["color"], ls=st["ls"], label=m)
    ax.set_xlabel("pruning ratio (fraction of training data removed)")
    ax.set_ylabel(("balanced " if key.endswith("bacc") else "") + ("validation" if key.startswith("val") else "test")
                  + " accuracy (%)")
    _finish(plt, fig, ax, summary, title, path)


def plot_accuracy_vs_cost(rows: list[dict], path: str, title: str = "", methods: list[str] | None = None,
                          key: str = "test_acc") -> None:
    """Accuracy against pruning cost (in full-data training runs): one point per method and ratio,
    the ratio written beside it; full-data training is the grey line at cost 0."""
    _plot_against_cost(rows, path, title, methods, key, "cost_fraction",
                       "pruning cost (surrogate + scoring, in full-data training runs; dashed: one run)", lines=False)


def plot_accuracy_vs_total_cost(rows: list[dict], path: str, title: str = "", methods: list[str] | None = None,
                                key: str = "test_acc") -> None:
    """Accuracy against total compute: (pruning + the final training run) / one full-data run, one point per
    method and ratio (mean over seeds), joined per method; full data sits at 1.0. Static and dynamic
    pruning on one axis."""
    _plot_against_cost(rows, path, title, methods, key, "total_cost",
                       "total compute: pruning + final training, in full-data runs (dashed: one run)", lines=True)


def _plot_against_cost(rows, path, title, methods, key, cost_key, xlabel, lines):
    summary = summarize(rows, key)
    cost = summarize(rows, cost_key)
    order = method_order(rows, methods)
    plt, fig, ax = _figure(len(order))
    for m in order:
        st = style(m, order)
        pts = sorted((cost[(m, r)][0], v[0], r) for (mm, r), v in summary.items() if mm == m and (m, r) in cost)
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [100 * p[1] for p in pts]
        if lines:
            ax.plot(xs, ys, color=st["color"], marker=st["marker"], ms=5, lw=1.0, ls=st["ls"], label=m, zorder=3)
        else:
            ax.scatter(xs, ys, color=st["color"], marker=st["marker"], s=28, label=m, zorder=3)
        for c, a, r in pts:
            if m != "full":
                ax.annotate(f"{r:g}", (c, 100 * a), textcoords="offset points", xytext=(4, 2),
                            fontsize=7 if lines else 6, color=st["color"])
    ax.axvline(1.0, color="#999999", lw=0.8, ls="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(("validation" if key.startswith("val") else "test") + " accuracy (%)")
    _finish(plt, fig, ax, summary, title, path)


def best_within_cost(rows: list[dict], methods: list[str] | None = None, key: str = "test_acc",
                     limits=(0.5, 0.7, 1.0)) -> str:
    """Markdown: per method, the best mean accuracy among its ratios whose mean total cost is within each limit."""
    summary = summarize(rows, key)
    total = summarize(rows, "total_cost")
    order = method_order(rows, methods)
    lines = ["| method | " + " | ".join(f"total cost <= {c:g}" for c in limits) + " |",
             "|---|" + "---|" * len(limits)]
    for m in order:
        cells = []
        for limit in limits:
            best = [(v[0], r, total[(m, r)][0]) for (mm, r), v in summary.items()
                    if mm == m and (m, r) in total and total[(m, r)][0] <= limit]
            if best:
                acc, r, c = max(best)
                cells.append(f"{100 * acc:.1f} (r={r:g}, {c:.2f})")
            else:
                cells.append("-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _finish(plt, fig, ax, summary, title, path):
    """What both accuracy plots end with: the full-data line, title, grid, legend outside, save."""
    if ("full", 0.0) in summary:
        ax.axhline(100 * summary[("full", 0.0)][0], color="gray", ls=":", lw=1, label="full data")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    _save(plt, fig, path)


def _save(plt, fig, path):
    with io.atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def grid_title(run: dict) -> str:
    data = run.get("data", {})
    parts = [f"{run.get('dataset')} / {run.get('model')}"]
    if data.get("label_noise"):
        parts.append(f"{data['label_noise']:.0%} {data.get('noise_kind', 'symmetric')} label noise")
    if data.get("imbalance", 1) not in (1, 1.0, None):
        parts.append(f"long tail {data['imbalance']:g}:1")
    return ", ".join(parts)


def write_grid_report(out_dir: str, rows: list[dict], run: dict) -> None:
    """``results.md`` (tables), ``accuracy_vs_ratio.png`` and ``accuracy_vs_cost.png`` in ``out_dir``."""
    methods = run.get("methods", [])
    title = grid_title(run)
    text = f"# {title}\n\nTest accuracy (%), mean ± std over seeds {run.get('seeds')}; pruning cost in full-data " \
           f"training runs.\n\n" + markdown_table(rows, methods)
    if any(r["method"] == "random" for r in rows):
        text += "\nDifference to random pruning (points, paired by seed):\n\n" + difference_table(rows, methods)
    if any(float(r.get("val_acc", float("nan"))) == float(r.get("val_acc", float("nan"))) for r in rows):
        text += "\nValidation accuracy (%), the held-out part of the training set:\n\n" + \
            markdown_table(rows, methods, key="val_acc")
    if run.get("data", {}).get("imbalance", 1) not in (1, 1.0, None):
        text += "\nBalanced test accuracy (%), the mean of per-class recalls:\n\n" + \
            markdown_table(rows, methods, key="test_bacc")
    has_total = any(float(r.get("total_cost", float("nan"))) == float(r.get("total_cost", 0)) for r in rows)
    if has_total:
        text += ("\nBest test accuracy (%) within a total compute (pruning + the final training run, in full-data "
                 "runs of the same recipe; in brackets the ratio and its total cost):\n\n"
                 + best_within_cost(rows, methods))
    io.write_bytes(os.path.join(out_dir, "results.md"), text.encode(), overwrite=True)
    plot_accuracy_vs_ratio(rows, os.path.join(out_dir, "accuracy_vs_ratio.png"), title, methods)
    if has_total:
        plot_accuracy_vs_total_cost(rows, os.path.join(out_dir, "accuracy_vs_total_cost.png"), title, methods)
    if any(r["method"] != "full" and float(r.get("cost_fraction", float("nan"))) == float(r.get("cost_fraction", 0))
           for r in rows):
        plot_accuracy_vs_cost(rows, os.path.join(out_dir, "accuracy_vs_cost.png"), title, methods)


# ----------------------------------------------------------------- suites --


def suite_cells(out_dir: str, names: list[str], method: str = "recommended", baseline: str = "random",
                key: str = "test_acc") -> list[dict]:
    """One row per (setting, ratio): ``method`` and ``baseline`` means, the best method and its mean."""
    from .results import read_results

    cells = []
    for name in names:
        path = os.path.join(out_dir, name, "results.csv")
        if not os.path.isfile(path):
            continue
        summary = summarize(read_results(path), key)
        for ratio in sorted({r for (m, r) in summary if m != "full"}):
            means = {m: v[0] for (m, r), v in summary.items() if r == ratio and m != "full"}
            if method not in means or baseline not in means:
                continue
            best = max(means, key=lambda m: (means[m], m == method))
            cells.append({"setting": name, "ratio": ratio, method: means[method], baseline: means[baseline],
                          "diff": means[method] - means[baseline], "best": best, "best_acc": means[best],
                          "within_best": means[method] >= means[best] - 0.005, "seeds": summary[(method, ratio)][2]})
    return cells


def write_suite_summary(out_dir: str, names: list[str], method: str = "recommended") -> str:
    """``summary.md`` over a suite's settings: a compact table (one row per setting), every cell, and
    the targets: cells below random - 0.5, the mean difference, cells best or within 0.5 of the best."""
    cells = suite_cells(out_dir, names, method)
    by_setting: dict = {}
    for c in cells:
        by_setting.setdefault(c["setting"], []).append(c)
    lines = [f"# Suite summary: {method} against random and the best method of each cell", "",
             "Test accuracy (%), mean over seeds. Per setting, at ratios 0.3 / 0.5 / 0.7 / 0.9: the difference to "
             "random pruning (points) and, where another method is more than 0.5 points better, that method and "
             "its lead.", "", f"| setting | {method} - random | best other method, where {method} is more than "
             "0.5 behind |", "|---|---|---|"]
    for name, cs in by_setting.items():
        diffs = " / ".join(f"{100 * c['diff']:+.1f}" for c in cs)
        behind = "; ".join(f"{c['ratio']:g}: {c['best']} +{100 * (c['best_acc'] - c[method]):.1f}"
                           for c in cs if not c["within_best"]) or "-"
        lines.append(f"| {name} | {diffs} | {behind} |")
    lines += ["", "Every cell:", "",
              "| setting | ratio | " + method + " | random | diff | best | within 0.5 of best |",
              "|---|---|---|---|---|---|---|"]
    for c in cells:
        lines.append(f"| {c['setting']} | {c['ratio']:g} | {100 * c[method]:.1f} | {100 * c['random']:.1f} | "
                     f"{100 * c['diff']:+.1f} | {c['best']} {100 * c['best_acc']:.1f} | "
                     f"{'yes' if c['within_best'] else 'no'} |")
    if cells:
        diffs = np.array([c["diff"] for c in cells])
        worst = cells[int(np.argmin(diffs))]
        lines[2:2] = [f"Cells: {len(cells)}. Mean difference to random: {100 * diffs.mean():+.2f} points; lowest "
                      f"{100 * diffs.min():+.2f} ({worst['setting']}, ratio {worst['ratio']:g}); cells below random "
                      f"- 0.5: {int((diffs < -0.005).sum())}; best or within 0.5 of the best: "
                      f"{sum(c['within_best'] for c in cells)} of {len(cells)} "
                      f"({100 * np.mean([c['within_best'] for c in cells]):.0f}%).", ""]
    text = "\n".join(lines) + "\n"
    io.write_bytes(os.path.join(out_dir, "summary.md"), text.encode(), overwrite=True)
    return text


# ------------------------------------------------------------ prune report --

THUMBS_PER_CLASS = 8
MAX_CLASS_GRIDS = 50


def _html(text) -> str:
    import html

    return html.escape(str(text))


def _image(x) -> np.ndarray | None:
    """A sample as an (H, W) or (H, W, 3) array in [0, 1] for display, or None when it is not an image."""
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3 and x.shape[0] in (1, 3) and min(x.shape[1:]) >= 4:
        x = x[0] if x.shape[0] == 1 else np.transpose(x, (1, 2, 0))
    elif not (x.ndim == 2 and min(x.shape) >= 4):
        return None
    lo, hi = np.nanmin(x), np.nanmax(x)
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _most_evident(idx, margin):
    """``idx`` ordered by label margin, lowest (strongest evidence of a wrong label) first."""
    if margin is None or not len(idx):
        return idx
    return idx[np.argsort(np.asarray(margin)[idx], kind="stable")]


# Tile frames: what happened to the sample.
FRAME = {"kept": "#2ca02c", "removed": "#d62728", "aside": "#ff7f0e"}


def _grid_png(images, captions, path, frame):
    """One row of thumbnails, each framed in ``frame`` colour with a two-line caption under it, sized so
    that the captions read at about 13 px on the page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(1.2 * n, 1.75), dpi=100, squeeze=False)
    for j, ax in enumerate(axes[0]):
        img = images[j]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor(frame)
            spine.set_linewidth(3)
        ax.set_xlabel(captions[j], fontsize=9.5, labelpad=3, linespacing=1.1)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.98, bottom=0.27, wspace=0.12)
    _save(plt, fig, path)


def _quota_words(alpha: float) -> str:
    if alpha == 0:
        return ("Every class keeps the same number of samples, counted after its suspected wrong labels are set "
                "aside (a class with fewer trusted samples than that keeps all of them).")
    if alpha == 1:
        return "Every class keeps the same share of its trusted samples (those not set aside)."
    return (f"Class sizes after selection lie between equal counts and equal shares of the trusted samples "
            f"(exponent {alpha:g}: 0 is equal counts, 1 equal shares).")


def _hist_png(values, kept, path, xlabel, title, cut=None, aside=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 2.9), dpi=100)
    finite = np.isfinite(values)
    bins = np.histogram_bin_edges(values[finite], bins=50) if finite.any() else 10
    # Stacked, so that every bar shows how many of its samples were kept, removed and set aside.
    aside = np.zeros(len(values), bool) if aside is None else aside
    ax.hist([values[finite & kept], values[finite & ~kept & ~aside], values[finite & aside]], bins=bins,
            stacked=True, color=[FRAME["kept"], FRAME["removed"], FRAME["aside"]],
            label=["kept", "removed", "set aside as mislabelled"])
    if cut is not None:
        ax.axvline(cut, color="black", ls="--", lw=1, label="cut")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("samples", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(plt, fig, path)


def write_prune_report(result, folder: str, *, dataset=None, bench_dir: str | None = None,
                       overwrite: bool = False, per_class: int = THUMBS_PER_CLASS) -> str:
    """One self-contained HTML page (``report.html``, images in ``report_files/``) of a prune result.

    Per class: its size, how many were kept, the estimated noise and how many were set aside, then
    grids of the highest- and lowest-scored samples and of the removed samples the surrogate
    believes mislabelled (given label -> the surrogate's). Histograms of the scores and of the
    label margin with the cut marked, the cost, and a bench's plots when ``bench_dir`` is given.
    Samples that are not images are listed in tables. At most ``per_class`` samples per class
    and grid, and grids for at most 50 classes (those with the most suspected labels), so the
    page stays light for any N.
    """
    from .select import confident_noise

    page = os.path.join(folder, "report.html")
    if os.path.exists(page) and not overwrite:
        raise io.OutputExistsError(page)
    files = os.path.join(folder, "report_files")
    os.makedirs(files, exist_ok=True)
    dataset = dataset if dataset is not None else result.dataset
    labels, scores = result.labels, result.scores
    kept = result.kept_mask()
    probs = result.evidence.get("probs")
    suspect = np.zeros(len(labels), bool)
    margin = surrogate_label = None
    if probs is not None and probs.shape[1] > int(labels.max()):
        info = confident_noise(probs, labels, result.decisions.get("noise_rule", "confident"))
        suspect, margin = info["suspect"], info["margin"]
        surrogate_label = np.asarray(probs).argmax(1)
    removed_suspect = suspect & ~kept
    rows = result.per_class()
    d = result.decisions
    cost = result.cost or {}
    parts = [f"""<!doctype html><html><head><meta charset="utf-8"><title>dataprune report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#222}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
th{{background:#f3f3f3}}td.l{{text-align:left}}h2{{margin-top:32px;border-bottom:1px solid #ddd}}
.grid img{{display:block;max-width:100%}}.muted{{color:#666;font-size:13px}}.warn{{color:#a33}}</style></head><body>
<h1>What was pruned, and why</h1>
<p>Kept <b id="n-kept">{result.n_kept}</b> of <b id="n-total">{len(scores)}</b> samples (pruning ratio
<b id="ratio">{result.ratio:g}</b>) with method <b id="method">{_html(result.method)}</b> and policy
<b id="policy">{_html(result.policy)}</b>.</p>"""]
    facts = []
    if "estimated_noise" in d and d.get("noise_rule") != "none":
        facts.append("Labels that look wrong to the surrogate: "
                     f"<b id=\"estimated-noise\">{100 * d['estimated_noise']:.1f}%"
                     f"</b> of the samples; set aside: <b id=\"set-aside\">{d.get('set_aside', 0)}</b>.")
    from .select import evidence_reports

    for report in evidence_reports(d):
        if report.get("held_out_accuracy"):
            facts.append(f"The surrogate was judged on {report.get('held_out')} samples it did not train on: accuracy "
                         + ", ".join(f"{100 * a:.0f}%" for a in report["held_out_accuracy"]) + " at epochs "
                         + ", ".join(str(e) for e in report.get("checkpoint_epochs", []))
                         + f"; the label evidence was read at epochs {report.get('evidence_epochs')}.")
        if report.get("trend"):
            facts.append(_html(report["trend"][0].upper() + report["trend"][1:]) + ".")
        for key in ("why", "caution"):
            if report.get(key):
                facts.append(f"<span class=\"warn\">{_html(report[key])}</span>")
    if d.get("neighbours"):
        from .select import describe_neighbours

        facts.append("The label evidence: " + describe_neighbours(d) + ".")
    if d.get("evidence_advice"):
        from .pipeline import advice_text

        text = advice_text(d["evidence_advice"])
        facts.append(f"<span class=\"warn\" id=\"evidence-advice\">{_html(text[0].upper() + text[1:])}.</span>")
    if "sampling" in d:
        from .select import describe_sampling

        facts.append("Within each class the policy kept " + describe_sampling(d) + ".")
    if "alpha" in d:
        facts.append(_quota_words(float(d["alpha"])))
    if cost:
        frac = cost.get("cost_fraction")
        share = f"<b id=\"cost-fraction\">{frac:.2f}</b> of one full training run" \
            if frac is not None and frac == frac else _html(cost.get("cost_unknown", "unknown share of a training run"))
        facts.append(f"Pruning cost: {share} ({cost.get('prune_seconds', float('nan')):.1f} s; plan "
                     f"{_html(cost.get('plan'))}).")
    parts.append("<p>" + "<br>".join(facts) + "</p>")
    parts.append("<h2>Per class</h2><table id=\"per-class\"><tr><th>class</th><th>size</th><th>kept</th>"
                 "<th>kept share</th><th>estimated noise</th><th>set aside</th></tr>")
    for r in rows:
        noise = "" if r["estimated_noise"] is None else f"{100 * r['estimated_noise']:.1f}%"
        parts.append(f"<tr class=\"class-row\" data-class=\"{r['class']}\" data-size=\"{r['size']}\" "
                     f"data-kept=\"{r['kept']}\"><td class=\"l\">{_html(r['name'])}</td><td>{r['size']}</td>"
                     f"<td>{r['kept']}</td><td>{100 * r['kept_share']:.1f}%</td><td>{noise}</td>"
                     f"<td>{'' if r['set_aside'] is None else r['set_aside']}</td></tr>")
    parts.append("</table>")
    # Histograms.
    kept_scores = scores[kept & np.isfinite(scores)]
    cut = float(kept_scores.min()) if len(kept_scores) else None
    _hist_png(scores, kept, os.path.join(files, "scores.png"), "score (higher = keep)",
              f"scores of kept and removed samples ({result.method})", cut if result.policy in ("topk",) else None,
              aside=removed_suspect)
    parts.append("<h2>Scores and evidence</h2><p class=\"muted\">Higher score = keep. Wrong labels of one class "
                 "agree with each other, so class-wise scores can rank them high; that is why the policy first sets "
                 "aside the samples whose label the surrogate contradicts (a low label margin, left in the second "
                 "plot), then keeps by score.</p>"
                 "<div class=\"grid\"><img src=\"report_files/scores.png\" alt=\"score histogram\"></div>")
    if margin is not None:
        cutoff = float(margin[suspect].max()) if suspect.any() else None
        _hist_png(margin, kept, os.path.join(files, "margin.png"),
                  "label margin: probability of the given label minus the largest other (surrogate)",
                  "evidence for wrong labels (dashed: highest margin of a suspect)", cutoff, aside=removed_suspect)
        parts.append("<div class=\"grid\"><img src=\"report_files/margin.png\" alt=\"margin histogram\"></div>")
    # Per-class samples.
    classes = [r["class"] for r in rows]
    if len(classes) > MAX_CLASS_GRIDS:
        classes = sorted(classes, key=lambda c: -int((removed_suspect & (labels == c)).sum()))[:MAX_CLASS_GRIDS]
        classes.sort()
    is_image = dataset is not None and len(dataset) == len(labels) and _image(dataset[0][0]) is not None
    parts.append(f"<h2>Samples per class</h2><p class=\"muted\">Up to {per_class} per class and kind, framed by what "
                 "happened to them: <b style=\"color:#2ca02c\">kept</b> (the highest-scored, then the lowest-scored "
                 "of the kept: those just above the cut), <b style=\"color:#d62728\">removed</b> (the lowest-scored), "
                 "and <b style=\"color:#ff7f0e\">set aside as mislabelled</b> (the label it was given &rarr; the "
                 "surrogate's prediction, most evident first). Under each image: its position in the dataset."
                 + ("" if is_image else " The samples are not images (or the dataset was not available): "
                    "tables instead.") + "</p>")
    for c in classes:
        members = np.flatnonzero(labels == c)
        in_kept = members[kept[members]]
        in_kept = in_kept[np.argsort(-scores[in_kept], kind="stable")]
        pruned = members[~kept[members] & ~removed_suspect[members]]
        pruned = pruned[np.argsort(scores[pruned], kind="stable")]
        lowest_kept = in_kept[per_class:][-per_class:]           # not repeated from the highest row
        kinds = [("kept", "kept: highest scores", in_kept[:per_class], "kept"),
                 ("kept-lowest", "kept: lowest scores", lowest_kept, "kept"),
                 ("removed", "removed: lowest scores", pruned[:per_class], "removed"),
                 ("set-aside", "set aside as mislabelled",
                  _most_evident(members[removed_suspect[members]], margin)[:per_class], "aside")]
        parts.append(f"<h3 class=\"class-head\" data-class=\"{c}\">class {_html(result.class_name(int(c)))}: "
                     f"kept {len(in_kept)} of {len(members)}</h3>")
        for tag, title, idx, kind in kinds:
            if not len(idx):
                continue
            flips = kind == "aside" and surrogate_label is not None
            shown = f"data-kind=\"{kind}\" data-indices=\"{','.join(str(int(i)) for i in idx)}\""
            caps = [f"#{int(i)}\n" + (f"{result.class_name(int(labels[i]))} \u2192 "
                                      f"{result.class_name(int(surrogate_label[i]))}" if flips
                                      else f"score {scores[i]:.3g}") for i in idx]
            if is_image:
                name = f"class{int(c)}-{tag}.png"
                _grid_png([_image(dataset[int(i)][0]) for i in idx], caps, os.path.join(files, name), FRAME[kind])
                parts.append(f"<p class=\"muted\">{title}</p><div class=\"grid\">"
                             f"<img src=\"report_files/{name}\" alt=\"class {c} {title}\" {shown}></div>")
            else:
                parts.append(f"<p class=\"muted\">{title}</p><table {shown}><tr><th>index</th><th>score</th>"
                             + ("<th>given &rarr; surrogate</th>" if flips else "") + "</tr>"
                             + "".join(f"<tr><td>{int(i)}</td><td>{scores[i]:.4g}</td>"
                                       + (f"<td>{_html(caps[j].split(chr(10))[1])}</td>" if flips else "") + "</tr>"
                                       for j, i in enumerate(idx)) + "</table>")
    if bench_dir:
        import shutil

        shown = []
        for name in ("accuracy_vs_ratio.png", "accuracy_vs_cost.png"):
            src = os.path.join(bench_dir, name)
            if os.path.isfile(src):
                shutil.copyfile(src, os.path.join(files, f"bench-{name}"))
                shown.append(f"<div class=\"grid\"><img src=\"report_files/bench-{name}\" alt=\"{name}\"></div>")
        if shown:
            parts.append(f"<h2>Benchmark</h2><p class=\"muted\">From {_html(bench_dir)}.</p>" + "".join(shown))
    env = result.provenance.get("environment", {})
    parts.append(f"<h2>Provenance</h2><p class=\"muted\">dataprune {_html(env.get('dataprune'))}"
                 f"{' (' + _html(env.get('git_commit')) + ')' if env.get('git_commit') else ''}, torch "
                 f"{_html(env.get('torch'))}; dataset fingerprint {_html(result.provenance.get('fingerprint'))}</p>")
    parts.append("</body></html>\n")
    io.write_bytes(page, "\n".join(parts).encode(), overwrite=True)
    return page
