"""The leaderboard table: columns in labelled groups, each header explained, bits per activation derived.

The table is HTML (two header rows: the group, then the column) whose cells hold Markdown spans, so
links to paper pages are still checked by mkdocs. Every value from the results goes through
:func:`mcbench.site.escape.md`. Nothing here runs a model.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from mcbench.benchmarks.leaderboard import json_object
from mcbench.site.escape import md
from mcbench.site.fmt import DASH, isnum, pm, scale_for, sig, times

# families whose methods never quantize activations: their activations are float32
FLOAT_ACTIVATION_FAMILIES = ("reference", "distillation", "pruning", "compact", "acceleration")
ACT_BITS_KEYS = ("activation_bits", "act_bits", "activation_bits_binary_layers", "a_bits")


@dataclass(frozen=True)
class Column:
    header: str
    group: str
    why: str              # the header's tooltip: what the column is and how it is obtained
    align: str = "r"



def activation_bits(row) -> str:
    """Bits per activation as the row's own data states it: the method's extra record or its config
    (``activation_bits``/``act_bits``), ``32`` for a family that never quantizes activations, ``—`` when the row
    does not say (a quantization or binarization row without the field)."""
    extra = json_object(row.get("extra_json"))
    config = json_object(row.get("config_json")).get("method_config") or {}
    for source in (extra, config):
        for key in ACT_BITS_KEYS:
            v = source.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                return f"{v:g}"
    family = str(row.get("family") or "")
    if family in FLOAT_ACTIVATION_FAMILIES:
        return "32"
    return DASH


def _real_word(r, col: str) -> str:
    v = r.get(col)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        v = r.get("compression_real")
    known = v is not None and not (isinstance(v, float) and math.isnan(v))
    word = "real" if (v is True or str(v).lower() in ("true", "1", "1.0")) else "simulated" if known else DASH
    note = r.get("compression_note")
    if word != DASH and isinstance(note, str) and note.strip():
        return f'<abbr title="{md(note)}">{word}</abbr>'
    return word


def columns(size_unit: str, params_unit: str, macs_unit: str, cuda: bool) -> list[Column]:
    cols = [
        Column("Method", "", "The catalog's short name; hover for the BibTeX key, click for the paper's page.", "l"),
        Column("Seeds", "", "Number of seeds the mean and ± standard deviation are over."),
        Column("Top-1 %", "Accuracy", "Top-1 accuracy on the test split, model selected on the validation split; "
                                      "mean ± sample standard deviation over seeds."),
        Column("Δ pp", "Accuracy", "Top-1 change against the task baseline, in percentage points."),
        Column(f"Params nz ({params_unit or '#'})", "Size", "Nonzero parameters, counted."),
        Column(f"Disk ({size_unit})", "Size", "The serialized deployable model (torch.save), measured."),
        Column(f"Encoded ({size_unit})", "Size", "The method's own encoded file (e.g. sparse indices + Huffman "
                                                 "codes), measured, decoded and re-evaluated."),
        Column(f"Theor. ({size_unit})", "Size", "Nonzero parameters × bits per weight / 8: theoretical."),
        Column("Bits/w", "Size", "Bits per weight, effective (theoretical size × 8 / parameters)."),
        Column(f"MACs ({macs_unit or '#'})", "Compute", "Multiply-accumulates per image, theoretical."),
        Column("Bits/act", "Compute", "Bits per activation, from the row's own record: the method's extra "
                                      "fields or config; 32 for a method that never quantizes activations; — "
                                      "where the row does not say."),
        Column("p50 b1 ms", "Compute", "Median CPU latency at batch 1 (ms), measured; ± std over seeds."),
        Column("p50 b64 ms", "Compute", "Median CPU latency at batch 64 (ms), measured; ± std over seeds."),
        Column("Speedup b1", "Compute", "Baseline p50 / method p50 at batch 1, timed side by side in the same run."),
        Column("Speedup b64", "Compute", "Baseline p50 / method p50 at batch 64, timed side by side."),
        Column("Train s", "Cost", "Seconds of this method's own training stages, mean per seed."),
        Column("+ reused s", "Cost", "Training of the cached teacher or baseline it started from (counted once)."),
        Column("Storage", "Real?", "real: the stored form is smaller; simulated: masks or fake quantization, the "
                                   "dense float model is what is stored. Hover a cell for the method's note.", "l"),
        Column("Compute", "Real?", "real: kernels do less work; simulated: the dense float model is what runs.", "l"),
    ]
    if cuda:
        cols.append(Column("CUDA p50 b1 ms", "Compute", "Median CUDA latency at batch 1 (ms), measured."))
    return cols


def _head(cols: list[Column]) -> str:
    groups: list[tuple[str, int]] = []
    for c in cols:
        if groups and groups[-1][0] == c.group:
            groups[-1] = (c.group, groups[-1][1] + 1)
        else:
            groups.append((c.group, 1))
    top = "".join(f'<th colspan="{n}" class="mc-group" scope="colgroup">{html.escape(g)}</th>' for g, n in groups)
    cells = "".join(f'<th title="{html.escape(c.why, quote=True)}" scope="col"'
                    f'{"" if c.align == "l" else " style=" + chr(34) + "text-align:right" + chr(34)}>'
                    f"{html.escape(c.header)}</th>" for c in cols)
    return f'<thead>\n<tr class="mc-group-row">{top}</tr>\n<tr>{cells}</tr>\n</thead>\n'


def task_table(d: pd.DataFrame, names: dict[str, str], link_for: Callable[[str], str | None],
               reference_rows: tuple[str, ...], baseline: str = "baseline") -> str:
    """The leaderboard of one (task, budget, dataset): HTML with Markdown cells (``md_in_html``)."""
    base = d[d["method"] == baseline]
    base_top1 = float(base["top1_acc_pct_mean"].iloc[0]) if len(base) and isnum(base["top1_acc_pct_mean"].iloc[0]) else None
    p_scale, p_unit = scale_for(d.get("params_nonzero_mean", []))
    m_scale, m_unit = scale_for(d.get("macs_mean", []))
    s_scale, s_unit = scale_for(d.get("size_bytes_disk_mean", []), ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")))
    s_unit = s_unit or "B"
    cuda = "latency_ms_p50_cuda_b1_mean" in d.columns and d["latency_ms_p50_cuda_b1_mean"].notna().any()
    cols = columns(s_unit, p_unit, m_unit, cuda)
    body = []
    for _, r in d.iterrows():
        m = str(r["method"])
        target = link_for(m)
        if target:
            name = f'[{md(names.get(m, m))}]({target} "{md(m)}")'
        elif m in reference_rows:
            name = f"*{md(m)}* (reference)"
        else:
            name = md(names.get(m, m))
        top1 = r.get("top1_acc_pct_mean")
        delta = float(top1) - base_top1 if base_top1 is not None and isnum(top1) and m != baseline else None

        def scaled(col, scale):
            v = r.get(col)
            return sig(float(v) / scale) if isnum(v) else DASH

        cells = [name, str(int(r["n_seeds"])), pm(top1, r.get("top1_acc_pct_std"), 2),
                 f"{delta:+.2f}" if delta is not None else DASH,
                 scaled("params_nonzero_mean", p_scale), scaled("size_bytes_disk_mean", s_scale),
                 scaled("size_bytes_encoded_mean", s_scale), scaled("size_bytes_theoretical_mean", s_scale),
                 sig(r.get("bits_per_weight_effective_mean")), scaled("macs_mean", m_scale), activation_bits(r),
                 pm(r.get("latency_ms_p50_cpu_b1_mean"), r.get("latency_ms_p50_cpu_b1_std")),
                 pm(r.get("latency_ms_p50_cpu_b64_mean"), r.get("latency_ms_p50_cpu_b64_std")),
                 times(r.get("speedup_cpu_b1_mean")), times(r.get("speedup_cpu_b64_mean")),
                 sig(r.get("train_seconds_total_mean")), sig(r.get("upstream_train_seconds_mean")),
                 _real_word(r, "storage_real"), _real_word(r, "compute_real")]
        if cuda:
            cells.append(sig(r.get("latency_ms_p50_cuda_b1_mean")))
        tds = "".join(f'<td markdown="span"{"" if c.align == "l" else " style=" + chr(34) + "text-align:right" + chr(34)}>'
                      f"{v}</td>" for c, v in zip(cols, cells))
        body.append(f'<tr markdown="1">{tds}</tr>')
    return ('<table markdown="1">\n' + _head(cols) + '<tbody markdown="1">\n' + "\n".join(body)
            + "\n</tbody>\n</table>\n")
