"""Read and schema-check one ``catalog/papers/<key>.yaml`` record.

YAML goes through ``yaml.safe_load`` only; ``yaml.compose`` (same safe loader)
gives the node tree whose marks tell the line of every field, so each problem
names the file, the line and the field.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mcbench.catalog.bibtex import PLACEHOLDER
from mcbench.catalog.model import CATALOG_FAMILIES, MEASURES, STATUSES, Claim, Compare, Complexity, reference_problem
from mcbench.catalog.problems import Problems

SCHEMA_VERSION = 1
# The main job (README) runs the "main" tier; "extended" methods run with `mcbench run --tier all`,
# each with its reason on its page (too expensive for the hour the main job is allowed on 2 cores).
LEADERBOARD_TIERS = ("main", "extended")
NodePath = tuple[Any, ...]

REQUIRED = ("schema_version", "key", "family", "summary", "status")
OPTIONAL = ("short_name", "tags", "reason", "leaderboard_tier", "tier_reason", "first_public_year", "venue_note", "reading_list", "discrepancies", "claims", "complexity")
COMPLEXITY_FIELDS = ("name", "where", "method_config", "input", "num_classes", "params", "mult_adds",
                     "tolerance_pct", "note")
CLAIM_REQUIRED_TEXT = ("metric", "unit", "dataset", "where")
CLAIM_OPTIONAL_TEXT = ("model", "baseline", "conditions")
CLAIM_FIELDS = ("value", "compare", *CLAIM_REQUIRED_TEXT, *CLAIM_OPTIONAL_TEXT)
COMPARE_FIELDS = ("measure", "expected", "tolerance", "tolerance_pct", "tolerance_why", "fixed_by", "reference")


@dataclass
class YamlDoc:
    """A parsed YAML file: its data and the 1-based line of every node path."""

    path: Path
    data: Any
    lines: dict[NodePath, int] = field(default_factory=dict)

    def line_of(self, *node_path: Any) -> int:
        """Line of the deepest existing prefix of ``node_path`` (a missing field -> its parent)."""
        for n in range(len(node_path), -1, -1):
            if node_path[:n] in self.lines:
                return self.lines[node_path[:n]]
        return 1


@dataclass
class PaperMeta:
    """The validated content of one YAML record (merged with its BibTeX entry by the loader)."""

    key: str
    family: str
    tags: list[str]
    summary: str
    status: str
    reason: str | None
    venue_note: str | None
    claims: list[Claim]
    discrepancies: list[str]
    reading_list: list[dict]
    path: Path
    lines: dict[str, int]                   # top-level field -> line
    complexity: list[Complexity] = field(default_factory=list)
    first_public_year: int | None = None    # when the first public version (arXiv v1) predates the cited one
    short_name: str | None = None           # the method's name on leaderboards ("Gradual pruning")
    leaderboard_tier: str = "main"          # "extended": the main job skips it (``tier_reason`` says why)
    tier_reason: str | None = None


# --------------------------------------------------------------------------- YAML with line marks
def read_yaml(path: Path, problems: Problems) -> YamlDoc | None:
    """Parse ``path`` with the safe loader; a syntax error becomes a problem naming its line."""
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problems.add(path, *_yaml_error(exc))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(path, 1, "file", f"cannot read: {exc}")
        return None
    doc = YamlDoc(path=path, data=data)
    if node is not None:
        _mark_lines(node, (), doc, problems)
    return doc


def _yaml_error(exc: yaml.YAMLError) -> tuple[int, str, str]:
    """(line, field, message) of a YAML syntax error, with the construct it was inside of."""
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    mark = problem_mark or context_mark
    message = f"invalid YAML: {getattr(exc, 'problem', None) or str(exc).splitlines()[0]}"
    context = getattr(exc, "context", None)
    if context and context_mark is not None and context_mark is not mark:
        message += f" ({context} started on line {context_mark.line + 1})"
    return (mark.line + 1 if mark is not None else 1), "yaml", message


def _mark_lines(node: yaml.Node, prefix: NodePath, doc: YamlDoc, problems: Problems) -> None:
    doc.lines.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                problems.add(doc.path, key_node.start_mark.line + 1, _dotted(prefix + (key,)), "field given twice")
            seen.add(key)
            doc.lines[prefix + (key,)] = key_node.start_mark.line + 1
            _mark_lines(value_node, prefix + (key,), doc, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _mark_lines(item, prefix + (i,), doc, problems)


def _dotted(node_path: NodePath) -> str:
    """``("claims", 0, "unit")`` -> ``claims[0].unit``."""
    out = ""
    for part in node_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


# --------------------------------------------------------------------------- schema
class _Checker:
    """Small typed accessors that report a problem (file, line, field) and return a default."""

    def __init__(self, doc: YamlDoc, problems: Problems) -> None:
        self.doc, self.problems = doc, problems

    def fail(self, node_path: NodePath, message: str) -> None:
        self.problems.add(self.doc.path, self.doc.line_of(*node_path), _dotted(node_path), message)

    def text(self, obj: dict, node_path: NodePath, *, required: bool) -> str | None:
        value = obj.get(node_path[-1])
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.fail(node_path, "required, must be non-empty text")
            return None
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            self.fail(node_path, f"must be text, got {type(value).__name__}")
            return None
        return str(value).strip()

    def number(self, obj: dict, node_path: NodePath) -> float | None:
        value = obj.get(node_path[-1])
        if value is None:
            self.fail(node_path, "required, must be a number")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(node_path, f"must be a number, got {value!r}")
            return None
        if not math.isfinite(value):
            self.fail(node_path, f"must be a finite number, got {value!r}")
            return None
        return float(value)

    def choice(self, obj: dict, node_path: NodePath, allowed: tuple[str, ...]) -> str | None:
        value = obj.get(node_path[-1])
        if value not in allowed:
            self.fail(node_path, f"unknown value {value!r}; expected one of {', '.join(allowed)}")
            return None
        return value

    def items(self, obj: dict, node_path: NodePath, kind: type) -> list:
        value = obj.get(node_path[-1])
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(node_path, f"must be a list, got {type(value).__name__}")
            return []
        good = []
        for i, item in enumerate(value):
            if isinstance(item, kind) and not isinstance(item, bool):
                good.append(item)
            else:
                self.fail(node_path + (i,), f"must be a {kind.__name__}, got {item!r}")
        return good

    def unknown(self, obj: dict, node_path: NodePath, known: tuple[str, ...]) -> None:
        for name in obj:
            if name not in known:
                self.fail(node_path + (name,), f"unknown field; expected one of {', '.join(known)}")


def check_record(doc: YamlDoc, problems: Problems) -> PaperMeta | None:
    """Validate a parsed YAML record; returns ``None`` when it is too broken to use."""
    c = _Checker(doc, problems)
    data = doc.data
    if not isinstance(data, dict):
        c.fail((), "a paper record must be a YAML mapping")
        return None
    _check_placeholders(data, (), c)
    c.unknown(data, (), REQUIRED + OPTIONAL)
    if data.get("schema_version") != SCHEMA_VERSION:
        c.fail(("schema_version",), f"must be {SCHEMA_VERSION}, got {data.get('schema_version')!r}")
    key = c.text(data, ("key",), required=True)
    if key is not None and key != doc.path.stem:
        c.fail(("key",), f"{key!r} differs from the file name {doc.path.stem!r}")
    family = c.choice(data, ("family",), CATALOG_FAMILIES)
    status = c.choice(data, ("status",), STATUSES)
    reason = c.text(data, ("reason",), required=status == "catalog-only")
    summary = c.text(data, ("summary",), required=True)
    claims = _check_claims(data, c)
    tier = c.choice(data, ("leaderboard_tier",), LEADERBOARD_TIERS) if "leaderboard_tier" in data else "main"
    tier_reason = c.text(data, ("tier_reason",), required=tier == "extended")
    if tier_reason and tier != "extended":
        c.fail(("tier_reason",), "only an extended-tier record gives a tier_reason")
    meta = PaperMeta(
        key=key or doc.path.stem, family=family or "", tags=[str(t) for t in c.items(data, ("tags",), str)],
        summary=summary or "", status=status or "", reason=reason,
        venue_note=c.text(data, ("venue_note",), required=False), claims=claims,
        discrepancies=c.items(data, ("discrepancies",), str), reading_list=c.items(data, ("reading_list",), dict),
        path=doc.path, lines={k[0]: v for k, v in doc.lines.items() if len(k) == 1},
        complexity=_check_complexity(data, c), first_public_year=_check_year(data, c),
        short_name=c.text(data, ("short_name",), required=False),
        leaderboard_tier=tier or "main", tier_reason=tier_reason,
    )
    return meta if family and status else None


def _check_year(data: dict, c: _Checker) -> int | None:
    """``first_public_year``: a four-digit integer (the year of the first public version), or absent."""
    value = data.get("first_public_year")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1900 <= value <= 2100:
        c.fail(("first_public_year",), f"must be a four-digit year, got {value!r}")
        return None
    return value


def _check_complexity(data: dict, c: _Checker) -> list[Complexity]:
    """The optional ``complexity`` block: the paper's own configurations and their table figures."""
    out = []
    for i, raw in enumerate(c.items(data, ("complexity",), dict)):
        at = ("complexity", i)
        c.unknown(raw, at, COMPLEXITY_FIELDS)
        name, where = c.text(raw, at + ("name",), required=True), c.text(raw, at + ("where",), required=True)
        # null: the paper prints no such figure (then a note must say so; at least one figure is required)
        params = c.number(raw, at + ("params",)) if raw.get("params") is not None else None
        madds = c.number(raw, at + ("mult_adds",)) if raw.get("mult_adds") is not None else None
        if params is None and madds is None:
            c.fail(at + ("params",), "params and mult_adds are both null: give at least one of the paper's figures")
        elif (params is None or madds is None) and not raw.get("note"):
            c.fail(at + ("note",), "required when params or mult_adds is null: say that the paper prints no such figure")
        classes = c.number(raw, at + ("num_classes",))
        tol = c.number(raw, at + ("tolerance_pct",)) if "tolerance_pct" in raw else 5.0
        shape, config = raw.get("input"), raw.get("method_config", {}) or {}
        if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
            c.fail(at + ("input",), "must be [channels, height, width], positive integers")
            shape = None
        if not isinstance(config, dict):
            c.fail(at + ("method_config",), "must be a mapping of the method's Config fields")
            config = None
        if None in (name, where, classes, tol, shape, config) or (params is None and madds is None):
            continue
        out.append(Complexity(name, where, dict(config), tuple(shape), int(classes), params, madds, tol,
                              c.text(raw, at + ("note",), required=False) or ""))
    return out


def _check_claims(data: dict, c: _Checker) -> list[Claim]:
    claims = []
    for i, raw in enumerate(c.items(data, ("claims",), dict)):
        claim = _check_claim(raw, ("claims", i), c)
        if claim is not None:
            claims.append(claim)
    return claims


def _check_claim(raw: dict, at: NodePath, c: _Checker) -> Claim | None:
    c.unknown(raw, at, CLAIM_FIELDS)
    value = c.number(raw, at + ("value",))
    text = {name: c.text(raw, at + (name,), required=True) for name in CLAIM_REQUIRED_TEXT}
    text |= {name: c.text(raw, at + (name,), required=False) or "" for name in CLAIM_OPTIONAL_TEXT}
    compare = _check_compare(raw.get("compare"), at + ("compare",), c)
    if value is None or any(text[name] is None for name in CLAIM_REQUIRED_TEXT) or compare is False:
        return None
    return Claim(value=value, compare=compare or None, **text)


def _check_compare(raw: Any, at: NodePath, c: _Checker) -> Compare | None | bool:
    """The optional ``compare`` block: ``None`` if absent, ``False`` if invalid."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        c.fail(at, "must be a mapping with measure, expected, tolerance (or tolerance_pct), tolerance_why")
        return False
    c.unknown(raw, at, COMPARE_FIELDS)
    measure = c.choice(raw, at + ("measure",), MEASURES)
    expected = c.number(raw, at + ("expected",))
    if ("tolerance" in raw) == ("tolerance_pct" in raw):
        c.fail(at + ("tolerance",), "give exactly one of tolerance (absolute, in the measure's unit) and "
                                    "tolerance_pct (relative to expected, %)")
        return False
    name = "tolerance" if "tolerance" in raw else "tolerance_pct"
    tolerance = c.number(raw, at + (name,))
    if tolerance is not None and tolerance < 0:
        c.fail(at + (name,), f"must be >= 0, got {tolerance}")
        return False
    pct = tolerance if name == "tolerance_pct" else None
    if pct is not None and expected is not None:
        tolerance = abs(expected) * pct / 100.0
    why = c.text(raw, at + ("tolerance_why",), required=False) or ""      # missing: the site gives no verdict
    fixed_by = c.text(raw, at + ("fixed_by",), required=False) or ""
    reference = raw.get("reference", "baseline")
    problem = reference_problem(reference)
    if problem:
        c.fail(at + ("reference",), problem)
        reference = None
    if measure is None or expected is None or tolerance is None or reference is None:
        return False
    return Compare(measure=measure, expected=expected, tolerance=tolerance, reference=reference, tolerance_pct=pct,
                   tolerance_why=why, fixed_by=fixed_by)


def _check_placeholders(obj: Any, at: NodePath, c: _Checker) -> None:
    """Text still starting with TODO (left by ``mcbench new-method``) is a problem."""
    if isinstance(obj, str) and obj.strip().startswith(PLACEHOLDER):
        c.fail(at, f"placeholder {obj.strip()[:40]!r} left by `mcbench new-method`; fill it in")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_placeholders(v, at + (k,), c)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_placeholders(v, at + (i,), c)
