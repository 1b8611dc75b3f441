"""Typed records of the catalog: papers and their claims (see catalog/README.md)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

CATALOG_FAMILIES = ("distillation", "pruning", "quantization", "binarization", "compact", "acceleration", "survey")
STATUSES = ("implemented", "planned", "catalog-only")
REFERENCES = ("baseline", "student")  # harness reference rows a claim can be compared against
# ... or, by prefix: "control:<name>" (the method's own control row, e.g. control:l1) and
# "method:<key>" (another registered method's row on the same task, budget and dataset)
REFERENCE_PREFIXES = ("control:", "method:")
_CONTROL_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_KEY_RE = re.compile(r"^[a-z][a-z\-]*\d{4}[a-z0-9]+$")


def reference_problem(reference: object) -> str | None:
    """Why ``reference`` is not a valid ``compare.reference`` value (None when it is)."""
    expected = f"expected one of {', '.join(REFERENCES)}, control:<name> or method:<key>"
    if not isinstance(reference, str):
        return f"unknown value {reference!r}; {expected}"
    if reference in REFERENCES:
        return None
    kind, _, name = reference.partition(":")
    if kind == "control" and _CONTROL_RE.fullmatch(name):
        return None
    if kind == "method" and _KEY_RE.fullmatch(name):
        return None
    return f"unknown value {reference!r}; {expected}"


def reference_method(reference: str, method: str) -> str:
    """The leaderboard ``method`` whose rows a claim of ``method`` is compared against."""
    kind, _, name = reference.partition(":")
    if kind == "control":
        return f"{method}:{name}"
    if kind == "method":
        return name
    return reference
MEASURES = ("acc_delta_pp", "params_ratio", "macs_ratio", "size_ratio_disk", "size_ratio_encoded", "speedup_cpu_b1", "speedup_cpu_b64")


@dataclass(frozen=True)
class Compare:
    measure: str          # one of MEASURES
    expected: float       # the paper's figure expressed in that measure
    tolerance: float      # |ours - expected| <= tolerance  =>  reproduced (absolute, in the measure's unit)
    reference: str = "baseline"   # "student" (distillation vs the student alone), "control:<name>", "method:<key>"
    tolerance_pct: float | None = None   # set when the record gives the tolerance relative to ``expected`` (%)
    tolerance_why: str = ""              # why this tolerance, in words ("" = not justified: no verdict)
    fixed_by: str = ""                   # the figure is set by the configuration (e.g. a chosen sparsity), not
                                         # an outcome of the method: shown, never given a verdict

    def tolerance_text(self) -> str:
        """``± 10% (3.6-4.4)`` or ``± 0.5``: the tolerance as the record states it."""
        if self.tolerance_pct is not None:
            lo, hi = self.expected - self.tolerance, self.expected + self.tolerance
            return f"± {self.tolerance_pct:g}% ({lo:.3g} to {hi:.3g})"
        return f"± {self.tolerance:g}"


@dataclass(frozen=True)
class Claim:
    metric: str
    value: float
    unit: str
    dataset: str
    model: str
    baseline: str
    where: str
    conditions: str = ""
    compare: Compare | None = None


@dataclass(frozen=True)
class Complexity:
    """A paper's own network configuration and its table's figures (checked on the meta device)."""

    name: str                     # e.g. "MobileNet 1.0-224"
    where: str                    # e.g. "Table 8"
    method_config: dict           # overrides of the method's Config that build this configuration
    input: tuple[int, int, int]   # (channels, height, width) the paper's figures are for
    num_classes: int
    params: float | None          # the paper's parameter count (None: the paper prints none)
    mult_adds: float | None       # the paper's multiply-adds per image (None: the paper prints none)
    tolerance_pct: float = 5.0    # |ours - paper| / paper * 100 allowed
    note: str = ""                # why a difference is expected (rounding, classifier head, ...)


@dataclass
class Paper:
    key: str
    family: str
    tags: list[str]
    summary: str
    status: str
    reason: str | None
    title: str
    authors: list[str]            # "First Last", in order
    year: int                     # the BibTeX year: the cited version's (a venue entry: the venue's year)
    venue: str | None             # booktitle or journal
    entry_type: str               # inproceedings, article, misc, ...
    eprint: str | None
    doi: str | None
    url: str | None
    bibtex: str                   # the entry as BibTeX text
    claims: list[Claim] = field(default_factory=list)
    complexity: list[Complexity] = field(default_factory=list)
    discrepancies: list[str] = field(default_factory=list)
    reading_list: list[dict] = field(default_factory=list)
    bib_file: Path | None = None
    yaml_file: Path | None = None
    venue_note: str | None = None
    bib_line: int = 1                                                  # line of the entry in bib_file
    field_lines: dict[str, int] = field(default_factory=dict, repr=False)  # YAML field -> line
    first_public_year: int | None = None   # the YAML record's; None: the cited version is the first public one
    short_name_field: str | None = None    # the YAML record's short_name
    leaderboard_tier: str = "main"         # "extended": skipped by the main job; tier_reason says why
    tier_reason: str | None = None

    @property
    def short_name(self) -> str:
        """A readable method name: the record's ``short_name``, else the title before its colon when short,
        else "Surname et al." of the first author."""
        if self.short_name_field:
            return self.short_name_field
        head = self.title.split(":")[0].strip()
        if ":" in self.title and 0 < len(head) <= 28:
            return head
        surname = self.authors[0].split()[-1] if self.authors else self.key
        return surname + (" et al." if len(self.authors) > 2 else f" & {self.authors[1].split()[-1]}"
                          if len(self.authors) == 2 else "")

    @property
    def first_public(self) -> int:
        """Year of the first public version (the key's year): ``first_public_year``, else the BibTeX year."""
        return self.first_public_year or self.year

    def line_of(self, yaml_field: str) -> int:
        """Line of a top-level field in ``yaml_file`` (1 when unknown)."""
        return self.field_lines.get(yaml_field, 1)

    @property
    def arxiv_url(self) -> str | None:
        return f"https://arxiv.org/abs/{self.eprint}" if self.eprint else None

    @property
    def doi_url(self) -> str | None:
        return f"https://doi.org/{self.doi}" if self.doi else None


@dataclass
class Catalog:
    papers: dict[str, Paper]
    root: Path | None = None      # the catalog directory it was loaded from

    def by_family(self) -> dict[str, list[Paper]]:
        out: dict[str, list[Paper]] = {f: [] for f in CATALOG_FAMILIES}
        for p in self.papers.values():
            out[p.family].append(p)
        return out

    def select(self, family: str | None = None, tags: tuple[str, ...] | list[str] = (), year: int | None = None,
               status: str | None = None) -> list[Paper]:
        """Papers matching every given filter (all ``tags`` must be present), sorted by key."""
        return [p for p in self.papers.values()
                if (family is None or p.family == family) and (year is None or p.year == year)
                and (status is None or p.status == status) and all(t in p.tags for t in tags)]

    def tags(self) -> dict[str, list[Paper]]:
        out: dict[str, list[Paper]] = {}
        for p in self.papers.values():
            for t in p.tags:
                out.setdefault(t, []).append(p)
        return dict(sorted(out.items()))


class CatalogError(Exception):
    """Raised by the loader; ``problems`` holds one "path:line: field: message" per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def count_by_family(papers: list[Paper]) -> dict[str, dict[str, int]]:
    """``{family: {"total": n, "implemented": n, "planned": n, "catalog-only": n}}`` for every family."""
    out = {f: {"total": 0, **{s: 0 for s in STATUSES}} for f in CATALOG_FAMILIES}
    for p in papers:
        out[p.family]["total"] += 1
        out[p.family][p.status] += 1
    return out
