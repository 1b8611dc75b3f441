"""Leaderboard plots as inline SVG: accuracy against a cost, legible on desktop and phone, in both colour schemes.

- Text is SVG ``<text>`` (not paths), in the page's font, at sizes that stay readable when the figure is
  scaled to a phone's width; its colour is ``currentColor``, so the figure follows the page's light or dark
  scheme; the background is transparent.
- Point labels are placed greedily beside their markers, never over another label or marker, and are left
  out (the table names every row) only when no free place exists.
- Error bars: top-1 and the cost's standard deviation over seeds, where there is more than one seed.
- Filled markers: real compression; hollow: simulated. The Pareto front is drawn as a dashed line.
- Compression levels as curves: a method's own row and its control rows at other compression levels
  (``<key>:<kind>`` rows whose theoretical size differs from the parent's) are one solid line, in the
  method's family colour and marker, points joined in the order of their compression level (so the
  curve on a latency axis shows what each level costs in time); a control at the parent's own level (another
  criterion, a random re-init) stays a separate point. Every other method is a point on the same axes.

Each plot comes with its data as CSV (the exact values drawn). Nothing here runs a model.
"""
from __future__ import annotations

import io
import math
import re
import textwrap
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
    vs_baseline: bool = False   # x = the baseline's cost / the row's cost (a compression ratio), not the cost


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
LEVEL_TOLERANCE = 0.02   # a control whose theoretical size is within 2% of its parent's is at the parent's level


def curves(d: pd.DataFrame, size_col: str = "size_bytes_theoretical_mean") -> dict[str, str]:
    """Method (leaderboard row name) -> the method whose compression-level curve it is on.

    A control row ``<key>:<kind>`` is a level of ``<key>`` when both carry the same ``level_knob`` (the
    method says at which level of which knob each row was made: ``flows.prune.at_level``); the parent is on
    its curve when it has at least one such level. Rows from snapshots without level labels fall back to
    size: a control whose size differs from the parent's by more than 2% is a level."""
    methods = set(map(str, d["method"]))
    size = {str(m): v for m, v in zip(d["method"], pd.to_numeric(d.get(size_col, pd.Series(dtype=float)),
                                                                  errors="coerce"))} if size_col in d else {}
    knob = {str(m): ("" if pd.isna(k) else str(k)) for m, k in zip(d["method"], d["level_knob"])} \
        if "level_knob" in d else {}
    labelled = any(knob.values())
    out: dict[str, str] = {}
    for m in sorted(methods):
        parent, _, kind = m.partition(":")
        if not kind or parent not in methods:
            continue
        if labelled:
            same = knob.get(m) and knob.get(m) == knob.get(parent)
        else:
            a, b = size.get(m), size.get(parent)
            same = not (a is None or b is None or pd.isna(a) or pd.isna(b) or b <= 0) and abs(a / b - 1.0) > LEVEL_TOLERANCE
        if same:
            out[m] = parent
            out[parent] = parent
    return out


def _real(r) -> bool:
    """Compute real (else the older compression_real): True, 1 or "true" as the CSV or JSON snapshot stores it."""
    v = r.get("compute_real") if r.get("compute_real") is not None and not _nan(r.get("compute_real")) \
        else r.get("compression_real")
    return v is True or str(v).strip().lower() in ("true", "1", "1.0")


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def plot_data(d: pd.DataFrame, spec: PlotSpec, names: dict[str, str]) -> pd.DataFrame:
    """The values drawn, one row per method: name, key, curve (the method whose level curve it is on, "" for a
    lone point), level (the control kind, "" for a method's own row), level_size_bytes (theoretical size: the
    order of the levels along a curve), x (scaled cost, or the compression ratio), x_std, top-1 mean and std,
    real."""
    rows = []
    on_curve = curves(d)
    base = d[d["method"].astype(str) == "baseline"]
    base_cost = pd.to_numeric(base[spec.cost], errors="coerce").iloc[0] if len(base) and spec.cost in base else None
    for _, r in d.iterrows():
        x = pd.to_numeric(pd.Series([r.get(spec.cost)]), errors="coerce").iloc[0]
        y = pd.to_numeric(pd.Series([r.get("top1_acc_pct_mean")]), errors="coerce").iloc[0]
        if pd.isna(x) or pd.isna(y) or x <= 0:
            continue
        xs = pd.to_numeric(pd.Series([r.get(spec.cost_std)]), errors="coerce").iloc[0] if spec.cost_std else float("nan")
        if spec.vs_baseline:
            if base_cost is None or pd.isna(base_cost) or base_cost <= 0:
                continue
            x, xs = base_cost / x, float("nan")
        ys = pd.to_numeric(pd.Series([r.get("top1_acc_pct_std")]), errors="coerce").iloc[0]
        key = str(r["method"])
        size = pd.to_numeric(pd.Series([r.get("size_bytes_theoretical_mean")]), errors="coerce").iloc[0]
        rows.append({"method": names.get(key, key), "key": key, "family": str(r.get("family", "")),
                     "curve": on_curve.get(key, ""), "level": key.partition(":")[2],
                     "level_size_bytes": None if pd.isna(size) else float(size),
                     "x": float(x) / (1.0 if spec.vs_baseline else spec.scale),
                     "x_std": (float(xs) / spec.scale) if not pd.isna(xs) else None,
                     "top1_acc_pct": float(y), "top1_acc_pct_std": float(ys) if not pd.isna(ys) else None,
                     "real": _real(r)})
    return pd.DataFrame(rows, columns=["method", "key", "family", "curve", "level", "level_size_bytes", "x", "x_std",
                                       "top1_acc_pct", "top1_acc_pct_std", "real"])


def _markers(data: pd.DataFrame) -> dict[str, str]:
    """One marker shape per method (its curve's, for a level), cycling within a family so two methods of
    one family stay apart."""
    out: dict[str, str] = {}
    per_family: dict[str, int] = {}
    for key, fam in sorted(zip(data["key"], data["family"])):
        owner = key.partition(":")[0]
        if owner not in out:
            out[owner] = MARKERS[per_family.get(fam, 0) % len(MARKERS)]
            per_family[fam] = per_family.get(fam, 0) + 1
    return out


def _front(data: pd.DataFrame, higher_x_better: bool = False) -> pd.DataFrame:
    """The points no other point beats on both accuracy and x (a cost: lower is better; a compression ratio:
    higher is better)."""
    d = data.sort_values(["x", "top1_acc_pct"], ascending=[not higher_x_better, False])
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
    axes = ax.get_window_extent(renderer)
    right = fig.bbox.x1 - 4   # labels may use the figure's right margin, never the tick labels or the title
    box = type("Box", (), {"x0": axes.x0, "y0": axes.y0, "x1": max(axes.x1, right), "y1": axes.y1})
    pts = [ax.transData.transform((r.x, r.top1_acc_pct)) for r in data.itertuples()]
    r_px = 7.0
    occupied = [(x - r_px, y - r_px, x + r_px, y + r_px) for x, y in pts]
    offsets = [(9, 5, "left"), (9, -14, "left"), (-9, 5, "right"), (-9, -14, "right"), (0, 11, "center"),
               (0, -22, "center"), (14, -4, "left"), (-14, -4, "right"), (9, 18, "left"), (-9, 18, "right"),
               (9, -28, "left"), (-9, -28, "right")]
    def text_of(row) -> str:   # a level on a curve is named by its level; the curve's own row names the method
        return str(row["level"]) if row.get("curve") and row.get("level") else str(row["method"])

    # methods' names first (best accuracy first), then the levels along the curves
    order = sorted(range(len(data)), key=lambda i: (bool(data.iloc[i].get("curve") and data.iloc[i].get("level")),
                                                    -data.iloc[i]["top1_acc_pct"]))
    for i in order:
        row = data.iloc[i]
        placed = False
        for dx, dy, ha in offsets:
            t = ax.annotate(text_of(row), (row["x"], row["top1_acc_pct"]), xytext=(dx, dy), textcoords="offset points",
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
        shapes = _markers(data) if len(data) else {}
        for owner, line in data[data["curve"] != ""].groupby("curve"):
            line = line.sort_values("level_size_bytes", ascending=False)   # level order, on every x axis
            colour = FAMILY_COLOURS.get(str(line["family"].iloc[0]), "#6d4c41")
            ax.plot(line["x"], line["top1_acc_pct"], "-", color=colour, lw=2.2, alpha=0.9, zorder=2.5)
        for r in data.itertuples():
            colour = FAMILY_COLOURS.get(r.family, "#6d4c41")
            ax.errorbar(r.x, r.top1_acc_pct, xerr=r.x_std if r.x_std else None, yerr=r.top1_acc_pct_std or None,
                        fmt=shapes.get(r.key.partition(":")[0], "o"), ms=9, mew=2, color=colour,
                        mfc=colour if r.real else "none", ecolor=colour, elinewidth=1.2, capsize=3, zorder=3)
        if len(data) > 1:
            front = _front(data, higher_x_better=spec.vs_baseline)
            ax.plot(front["x"], front["top1_acc_pct"], "--", color=INK, alpha=0.5, lw=1.2, zorder=2,
                    label="Pareto front")
        if len(data):
            lo, hi = float(data["x"].min()), float(data["x"].max())
            ax.set_xscale("log")
            ax.set_xlim(lo / 1.6, hi * 3.2)   # room on the right for the labels of the rightmost points
            ticks = _ticks(lo / 1.5, hi * 1.5)
            ax.set_xticks(ticks)
            ax.set_xticklabels([_tick_label(t) for t in ticks])
            ax.minorticks_off()
            ylo, yhi = float(data["top1_acc_pct"].min()), float(data["top1_acc_pct"].max())
            pad = max(0.6, (yhi - ylo) * 0.25)
            ax.set_ylim(ylo - pad, yhi + pad)
        wrap = max(30, int(width_in * 9))   # characters per line that fit the figure at this font size
        ax.set_xlabel(textwrap.fill(spec.xlabel, wrap))
        ax.set_ylabel("top-1 accuracy (%, test)")
        ax.set_title(textwrap.fill(spec.title, wrap - 4).replace("$", r"\$"), loc="left")
        ax.grid(True, alpha=0.25, color=INK)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        fig.tight_layout()
        safe = data.assign(method=data["method"].str.replace("$", r"\$", regex=False),
                           level=data["level"].astype(str).str.replace("$", r"\$", regex=False))
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
