"""Print every paper configuration of the catalog's complexity tables: the paper's parameters and
mult-adds next to ours, counted on the meta device (nothing allocated, no training).

    python scripts/complexity_report.py            # markdown table
"""
from __future__ import annotations

from mcbench.benchmarks.complexity import build_paper_config, count
from mcbench.catalog.loader import load_catalog


def _m(v: float | None) -> str:
    return "—" if v is None else f"{v / 1e6:.2f}M"


def _off(ours: float, paper: float | None) -> str:
    return "—" if paper is None else f"{(ours - paper) / paper * 100:+.1f}%"


def main() -> None:
    print("| paper | configuration | where | params paper | params ours | Δ | mult-adds paper | mult-adds ours | Δ |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in sorted(load_catalog().papers.values(), key=lambda p: p.key):
        for c in p.complexity:
            ch, h, w = c.input
            ours = count(build_paper_config(p.key, c.method_config, ch, (h, w), c.num_classes), ch, (h, w))
            print(f"| {p.key} | {c.name} | {c.where} | {_m(c.params)} | {_m(ours.params_count)} | "
                  f"{_off(ours.params_count, c.params)} | {_m(c.mult_adds)} | {_m(ours.macs)} | {_off(ours.macs, c.mult_adds)} |")


if __name__ == "__main__":
    main()
