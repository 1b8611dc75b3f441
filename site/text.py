"""Display text for the site: LaTeX in titles as plain text, reading-list entries with their links, and
environment values with units. Every string from the data still goes through :mod:`mcbench.site.escape`.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

from mcbench.site.escape import external, md

_MATH = re.compile(r"\$([^$]*)\$")
_SUB = str.maketrans("0123456789+-=()", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎")
_SUP = str.maketrans("0123456789+-=()n", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿ")
_GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "lambda": "λ", "mu": "μ",
          "sigma": "σ", "theta": "θ", "ell": "ℓ", "times": "×", "cdot": "·", "le": "≤", "ge": "≥"}
_MD_LINK = re.compile(r"\[([^\]]*)\]\(([^()\s]*(?:\([^()\s]*\)[^()\s]*)*)\)")


def plain_math(title: str) -> str:
    """``$L_0$`` -> ``L₀``, ``$\\ell_1$`` -> ``ℓ₁``: inline TeX math in a title as plain Unicode text."""

    def one(m: re.Match) -> str:
        body = m.group(1)
        body = re.sub(r"\\([A-Za-z]+)", lambda g: _GREEK.get(g.group(1), g.group(1)), body)
        body = re.sub(r"_\{([^}]*)\}|_(\w)", lambda g: (g.group(1) or g.group(2)).translate(_SUB), body)
        body = re.sub(r"\^\{([^}]*)\}|\^(\w)", lambda g: (g.group(1) or g.group(2)).translate(_SUP), body)
        return body.replace("{", "").replace("}", "")

    return _MATH.sub(one, title)


# --------------------------------------------------------------------------- reading lists
def load_reading_lists(catalog_root: Path | None) -> dict[str, dict]:
    """``reading_lists.yaml`` beside the catalog: storage file name -> {title, ...} ({} when absent)."""
    if catalog_root is None:
        return {}
    path = Path(catalog_root) / "reading_lists.yaml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    lists = data.get("lists") if isinstance(data, dict) else None
    return {str(k): v for k, v in (lists or {}).items() if isinstance(v, dict) and v.get("title")}


def reading_list_title(file: str, lists: dict[str, dict]) -> str:
    """A list's title; never its storage file name (an unknown file is "a reading list")."""
    entry = lists.get(file)
    return str(entry["title"]) if entry else "a reading list"


def render_listed(text: str) -> str:
    """How a list shows a paper, as Markdown: its ``[text](url)`` links become links, everything else is text."""
    out, pos = [], 0
    for m in _MD_LINK.finditer(text or ""):
        out.append(md(text[pos:m.start()]))
        out.append(external(m.group(1) or m.group(2), m.group(2)))
        pos = m.end()
    out.append(md((text or "")[pos:]))
    rendered = "".join(out)
    return rendered.strip()


# --------------------------------------------------------------------------- environment values
def _isnum(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def human_bytes(n: float) -> str:
    for factor, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {unit}"
    return f"{int(n)} B"


def human_seconds(s: float) -> str:
    if s >= 3600:
        return f"{s:,.0f} s ({s / 3600:.1f} h)"
    if s >= 60:
        return f"{s:,.0f} s ({s / 60:.1f} min)"
    return f"{s:.2f} s"


def env_value(key: str, value) -> str:
    """An env.json value as Markdown, with its unit read from the key's suffix."""
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(md(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{md(k)}: {env_value(k, v)}" for k, v in value.items()) or "none"
    if _isnum(value):
        if "bytes" in key:
            return human_bytes(float(value))
        if key.endswith("_s") or "_s_" in key or key.endswith("seconds"):
            return human_seconds(float(value))
        return f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"
    return md(value)


ENV_LABELS = {
    "torch_version": "PyTorch", "python": "Python", "cpu_model": "CPU", "cpu_threads": "CPU threads used",
    "cuda": "CUDA", "quantized_engines": "Quantized engines available", "git_commit": "Git commit",
    "platform": "Platform", "wall_time_s_total": "Total wall time of the runs", "peak_mem_bytes_max":
    "Peak memory of a run", "rows": "Result rows", "first_run_utc": "First run (UTC)", "last_run_utc": "Last run (UTC)",
}


def env_label(key: str) -> str:
    return ENV_LABELS.get(key) or key.replace("_", " ").capitalize()


# --------------------------------------------------------------------------- claim metrics in words
_WORDS = {"top1": "top-1", "top5": "top-5", "acc": "accuracy", "params": "parameters", "param": "parameter",
          "macs": "MACs", "flops": "FLOPs", "pp": "pp", "cpu": "CPU", "gpu": "GPU", "mb": "MB", "kb": "kB",
          "b1": "batch 1", "b64": "batch 64", "nonzero": "nonzero", "bnn": "BNN", "imagenet": "ImageNet",
          "cifar10": "CIFAR-10", "mnist": "MNIST", "bits": "bits", "x": "×"}


def metric_words(name: str) -> str:
    """``test_errors`` -> "test errors", ``top1_accuracy_drop`` -> "top-1 accuracy drop"."""
    parts = [p for p in re.split(r"[_\s]+", str(name)) if p]
    if not parts:
        return str(name)
    words = [_WORDS.get(p.lower(), p) for p in parts]
    text = " ".join(words)
    return text[0].upper() + text[1:]
