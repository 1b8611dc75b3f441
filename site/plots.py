"""Leaderboard plots as inline SVG: accuracy against a cost, legible on desktop and phone, in both colour schemes.

- Text is SVG ``<text>`` (not paths), in the page's font, at sizes that stay readable when the figure is
  scaled to a phone's width; its colour is ``currentColor``, so the figure follows the page's light or dark
  scheme; the background is transparent.
- Point labels are placed greedily beside their markers, never over another label or marker, and are left
  out (the table names every row) only when no free place exists.
- Error bars: top-1 and the cost's standard deviation over seeds, where there is more than one seed.
- Filled markers: real compression; hollow: simulated. The Pareto front is drawn as a dashed line.

Each plot comes with its data as CSV (the exact values drawn). Nothing here runs a model.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass

import pandas as pd

INK = "#123456"      # drawn colour replaced by currentColor in the SVG
FAMILY_COLOURS = {   # mid-saturation colours readable on white and on material's slate
    "reference": "#8a8a8a", "distillation": "#1e88e5", "pruning": "#e53935", "quantization": "#43a047",
    "binarization": "#8e24aa", "compact": "#fb8c00", "acceleration": "#00acc1",
}
FONT_PT = 11         # SVG user units (points); the browser test checks the rendered size on desktop and phone
WIDE_IN, NARROW_IN = 7.6, 4.4   # figure widths: desktop (shown ~760 px wide) and phone (~340 px wide)


@dataclass(frozen=True)
class PlotSpec:
    cost: str            # column of the mean cost (x)
    cost_std: str        # column of its std over seeds ('' for none)
    scale: float         # divide the cost by this for display
    xlabel: str
    title: str


def _real(r) -> bool:
    v = r.get("compute_real") if r.get("compute_real") is not None and not _nan(r.get("compute_real")) \
        else r.get("compression_real")
    return v is True or str(v).lower() == "true"


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def plot_data(d: pd.DataFrame, spec: PlotSpec, names: dict[str, str]) -> pd.DataFrame:
    """The values drawn, one row per method: name, key, x (scaled cost), x_std, top-1 mean and std, real."""
    rows = []
    for _, r in d.iterrows():
        x = pd.to_numeric(pd.Series([r.get(spec.cost)]), errors="coerce").iloc[0]
        y = pd.to_numeric(pd.Series([r.get("top1_acc_pct_mean")]), errors="coerce").iloc[0]
        if pd.isna(x) or pd.isna(y) or x <= 0:
            continue
        xs = pd.to_numeric(pd.Series([r.get(spec.cost_std)]), errors="coerce").iloc[0] if spec.cost_std else float("nan")
        ys = pd.to_numeric(pd.Series([r.get("top1_acc_pct_std")]), errors="coerce").iloc[0]
        rows.append({"method": names.get(str(r["method"]), str(r["method"])), "key": str(r["method"]),
                     "family": str(r.get("family", "")), "x": float(x) / spec.scale,
                     "x_std": (float(xs) / spec.scale) if not pd.isna(xs) else None,
                     "top1_acc_pct": float(y), "top1_acc_pct_std": float(ys) if not pd.isna(ys) else None,
                     "real": _real(r)})
    return pd.DataFrame(rows, columns=["method", "key", "family", "x", "x_std", "top1_acc_pct", "top1_acc_pct_std",
                                       "real"])


def _front(data: pd.DataFrame) -> pd.DataFrame:
    d = data.sort_values(["x", "top1_acc_pct"], ascending=[True, False])
    keep, best = [], -math.inf
    for idx, r in d.iterrows():
        if r["top1_acc_pct"] > best:
            keep.append(idx)
            best = r["top1_acc_pct"]
    return d.loc[keep]


def _ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks spanning [lo, hi] on a log axis (at least three)."""
    out = []
    e = math.floor(math.log10(lo)) - 1
    while 10 ** e <= hi * 10:
        for m in (1, 2, 5):
            t = m * 10 ** e
            if lo / 1.05 <= t <= hi * 1.05:
                out.append(t)
        e += 1
    if len(out) < 3:
        span = [lo * (hi / lo) ** (i / 3) for i in range(4)] if hi > lo else [lo / 2, lo, lo * 2]
        out = sorted({float(f"{t:.2g}") for t in span})
    return out


def _tick_label(t: float) -> str:
    return f"{t:,.0f}" if t >= 10 else f"{t:.3g}"


def _place_labels(ax, fig, data: pd.DataFrame) -> None:
    """Greedy label placement: the first candidate spot that overlaps no marker, label or the axes' edge."""
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    pts = [ax.transData.transform((r.x, r.top1_acc_pct)) for r in data.itertuples()]
    r_px = 7.0
    occupied = [(x - r_px, y - r_px, x + r_px, y + r_px) for x, y in pts]
    offsets = [(9, 5, "left"), (9, -14, "left"), (-9, 5, "right"), (-9, -14, "right"), (0, 11, "center"),
               (0, -22, "center"), (14, -4, "left"), (-14, -4, "right"), (9, 18, "left"), (-9, 18, "right"),
               (9, -28, "left"), (-9, -28, "right")]
    order = sorted(range(len(data)), key=lambda i: -data.iloc[i]["top1_acc_pct"])
    for i in order:
        row = data.iloc[i]
        placed = False
        for dx, dy, ha in offsets:
            t = ax.annotate(row["method"], (row["x"], row["top1_acc_pct"]), xytext=(dx, dy), textcoords="offset points",
                            ha=ha, va="bottom", fontsize=FONT_PT - 1, color=INK)
            bb = t.get_window_extent(renderer)
            rect = (bb.x0 - 2, bb.y0 - 2, bb.x1 + 2, bb.y1 + 2)
            inside = rect[0] >= box.x0 and rect[2] <= box.x1 and rect[1] >= box.y0 and rect[3] <= box.y1
            if inside and not any(_overlap(rect, o) for o in occupied):
                occupied.append(rect)
                placed = True
                break
            t.remove()
        if not placed:
            continue  # no free place: the table names the row


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def svg(data: pd.DataFrame, spec: PlotSpec, width_in: float = WIDE_IN) -> str:
    """The plot as an SVG document (text as text, colour currentColor, transparent background)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rc = {"svg.fonttype": "none", "font.size": FONT_PT, "font.family": "sans-serif", "text.color": INK,
          "axes.edgecolor": INK, "axes.labelcolor": INK, "xtick.color": INK, "ytick.color": INK,
          "axes.titlesize": FONT_PT + 1, "xtick.labelsize": FONT_PT - 1, "ytick.labelsize": FONT_PT - 1,
          "text.usetex": False, "axes.unicode_minus": False, "svg.hashsalt": "mcbench"}
    with plt.rc_context(rc):
        fig, ax = plt.subplots(figsize=(width_in, max(3.6, width_in * 0.6)), dpi=100)
        fig.patch.set_alpha(0)
        ax.patch.set_alpha(0)
        for r in data.itertuples():
            colour = FAMILY_COLOURS.get(r.family, "#6d4c41")
            ax.errorbar(r.x, r.top1_acc_pct, xerr=r.x_std if r.x_std else None, yerr=r.top1_acc_pct_std or None,
                        fmt="o", ms=9, mew=2, color=colour, mfc=colour if r.real else "none", ecolor=colour,
                        elinewidth=1.2, capsize=3, zorder=3)
        if len(data) > 1:
            front = _front(data)
            ax.plot(front["x"], front["top1_acc_pct"], "--", color=INK, alpha=0.5, lw=1.2, zorder=2,
                    label="Pareto front")
        if len(data):
            lo, hi = float(data["x"].min()), float(data["x"].max())
            ax.set_xscale("log")
            ax.set_xlim(lo / 1.6, hi * 1.6)
            ticks = _ticks(lo / 1.5, hi * 1.5)
            ax.set_xticks(ticks)
            ax.set_xticklabels([_tick_label(t) for t in ticks])
            ax.minorticks_off()
            ylo, yhi = float(data["top1_acc_pct"].min()), float(data["top1_acc_pct"].max())
            pad = max(0.6, (yhi - ylo) * 0.25)
            ax.set_ylim(ylo - pad, yhi + pad)
        ax.set_xlabel(spec.xlabel)
        ax.set_ylabel("top-1 accuracy (%, test)")
        ax.set_title(spec.title.replace("$", r"\$"), loc="left")
        ax.grid(True, alpha=0.25, color=INK)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        fig.tight_layout()
        safe = data.assign(method=data["method"].str.replace("$", r"\$", regex=False))
        _place_labels(ax, fig, safe)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", transparent=True)
        plt.close(fig)
    text = buf.getvalue().replace(INK, "currentColor")
    return text[text.index("<svg"):]


def inline(svg_text: str, label: str) -> str:
    """The SVG for embedding in a page: no blank lines (Markdown would end the HTML block), labelled."""
    body = re.sub(r"\n\s*\n", "\n", svg_text)
    body = re.sub(r"<metadata>.*?</metadata>", "", body, flags=re.S)
    return body.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1)
