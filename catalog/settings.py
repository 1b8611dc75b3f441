"""Paper settings: each implemented paper's own experiment, as data beside its catalog record.

``catalog/settings/<key>.yaml`` says which experiment of the paper it is (``title``), on which
data (``task``: the paper's dataset as an mcbench task, and the ``substitute`` task used when
that data is not available locally), with which architectures (role -> ArchSpec fields), method
config overrides, and two training budgets (``cpu``: sized for a laptop; ``paper``: the paper's
full schedule, for GPU users), which of the record's claims it reproduces, and where it departs
from the paper (in words). ``mcbench reproduce KEY`` runs it (``benchmarks/reproduce.py``).

Schema (``schema_version: 1``)::

    schema_version: 1
    key: hinton2015distilling
    title: "MNIST, 2x1200 teacher -> 2x800 student (Section 3)"
    task: mnist                 # mnist | cifar10 | imagefolder | fmnist | digits
    substitute: fmnist          # used when the paper's data is not available locally
    architectures:              # role -> ArchSpec fields (name, widths, depth, dropout); baseline, teacher and
                                # student replace the task's; other roles (student_thin_deep) are variants
      teacher: {name: mlp, widths: [1200, 1200], dropout: 0.5}
    method_config: {temperature: 20}
    budgets:
      cpu:   {epochs_scratch: 10, epochs_finetune: 2}     # Recipe fields
      paper: {epochs_scratch: 60, epochs_finetune: 10}
    claims: [0]                 # indices into the record's claims
    departures: "..."           # where this setting departs from the paper, in words (text or a list of texts)

YAML goes through ``yaml.safe_load`` only. Every problem names the file and the field.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCHEMA_VERSION = 1
SETTINGS_DIR = Path(__file__).resolve().parent / "settings"
BUDGET_NAMES = ("cpu", "paper")
ROLES = ("baseline", "teacher", "student")
TASK_NAMES = ("mnist", "cifar10", "imagefolder", "fmnist", "digits", "fmnist-retrieval")
FIELDS = ("schema_version", "key", "title", "task", "substitute", "architectures", "method_config", "budgets",
          "claims", "departures")
ARCH_FIELDS = ("name", "widths", "depth", "dropout")


class SettingError(ValueError):
    """A setting file that cannot be used; ``problems`` holds one ``path: field: message`` per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class ArchFields:
    """The fields of a ``benchmarks.archs.ArchSpec`` (kept as data here; the harness builds the spec)."""

    name: str
    widths: tuple[int, ...]
    depth: int = 1
    dropout: float = 0.0


@dataclass(frozen=True)
class PaperSetting:
    key: str
    title: str
    task: str
    substitute: str
    architectures: dict[str, ArchFields]      # baseline/teacher/student replace the task's; other roles are variants
    method_config: dict[str, Any]
    budgets: dict[str, dict[str, Any]]        # "cpu" | "paper" -> Recipe fields
    claims: tuple[int, ...]
    departures: str
    path: Path | None = field(default=None, compare=False)

    def name(self, budget: str) -> str:
        """The ``setting`` label its rows carry, e.g. ``hinton2015distilling/cpu``."""
        return f"{self.key}/{budget}"


# --------------------------------------------------------------------------- loading
def setting_path(key: str, root: Path | None = None) -> Path:
    return (root or SETTINGS_DIR) / f"{key}.yaml"


def available(root: Path | None = None) -> list[str]:
    """Keys that have a setting file, sorted."""
    return sorted(p.stem for p in (root or SETTINGS_DIR).glob("*.yaml"))


def load_setting(key: str, root: Path | None = None) -> PaperSetting:
    """The validated setting of paper ``key``; ``SettingError`` names every problem."""
    path = setting_path(key, root)
    if not path.exists():
        have = ", ".join(available(root)) or "none"
        raise SettingError([f"no paper setting for {key!r} ({path} does not exist); settings exist for: {have}"])
    return parse_setting(path)


def load_all(root: Path | None = None) -> dict[str, PaperSetting]:
    return {k: load_setting(k, root) for k in available(root)}


def parse_setting(path: Path) -> PaperSetting:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SettingError([f"{path}: cannot read: {str(exc).splitlines()[0]}"]) from None
    check = _Check(path)
    if not isinstance(data, dict):
        check.fail("<root>", "must be a mapping")
        raise SettingError(check.problems)
    return check.setting(data)


class _Check:
    """Field-by-field validation that collects every problem before raising once."""

    def __init__(self, path: Path) -> None:
        self.path, self.problems = path, []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{self.path}: {where}: {message}")

    def setting(self, d: dict) -> PaperSetting:
        for extra in sorted(set(d) - set(FIELDS)):
            self.fail(extra, f"unknown field; known: {', '.join(FIELDS)}")
        if d.get("schema_version") != SCHEMA_VERSION:
            self.fail("schema_version", f"must be {SCHEMA_VERSION}, got {d.get('schema_version')!r}")
        key = self.text(d, "key")
        if key and key != self.path.stem:
            self.fail("key", f"{key!r} does not match the file name {self.path.stem!r}")
        task, substitute = self.text(d, "task"), self.text(d, "substitute")
        for name, value in (("task", task), ("substitute", substitute)):
            if value and value not in TASK_NAMES:
                self.fail(name, f"unknown task {value!r}; expected one of {', '.join(TASK_NAMES)}")
        setting = PaperSetting(
            key=key or "", title=self.text(d, "title") or "", task=task or "", substitute=substitute or "",
            architectures=self.architectures(d.get("architectures") or {}),
            method_config=self.mapping(d, "method_config"), budgets=self.budgets(d.get("budgets")),
            claims=self.claims(d.get("claims")), departures=self.departures(d.get("departures")), path=self.path)
        if self.problems:
            raise SettingError(self.problems)
        return setting

    def text(self, d: dict, name: str) -> str | None:
        v = d.get(name)
        if not isinstance(v, str) or not v.strip():
            self.fail(name, "required, must be non-empty text")
            return None
        return v.strip()

    def departures(self, v: Any) -> str:
        """Text, or a list of texts (one departure each), kept as one paragraph."""
        items = v if isinstance(v, list) else [v]
        if not items or not all(isinstance(i, str) and i.strip() for i in items):
            self.fail("departures", "required: where the setting departs from the paper, as text or a list of texts")
            return ""
        return " ".join(i.strip() for i in items)

    def mapping(self, d: dict, name: str) -> dict:
        v = d.get(name, {}) or {}
        if not isinstance(v, dict):
            self.fail(name, "must be a mapping")
            return {}
        return dict(v)

    def architectures(self, d: Any) -> dict[str, ArchFields]:
        if not isinstance(d, dict):
            self.fail("architectures", "must map a role to ArchSpec fields")
            return {}
        from mcbench.benchmarks.archspec import known_arch_names  # the @arch names of archs.py, without torch

        ARCHS = known_arch_names()

        out = {}
        for role, spec in d.items():
            where = f"architectures.{role}"
            if not (isinstance(role, str) and role.isidentifier()):
                self.fail(where, f"a role is a name like {', '.join(ROLES)} (or a variant such as student_thin_deep)")
                continue
            if not isinstance(spec, dict) or set(spec) - set(ARCH_FIELDS) or "name" not in spec or "widths" not in spec:
                self.fail(where, f"must be a mapping with name and widths (fields: {', '.join(ARCH_FIELDS)})")
                continue
            if spec["name"] not in ARCHS:
                self.fail(f"{where}.name", f"unknown architecture {spec['name']!r}; known: {', '.join(sorted(ARCHS))}")
                continue
            widths = spec["widths"]
            if (not isinstance(widths, list) or not any(isinstance(w, int) and w > 0 for w in widths)
                    or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 0 for w in widths)):
                self.fail(f"{where}.widths", "must be a list of integers >= 0 (0: a builder's marker, e.g. a pool), "
                                             "at least one positive")
                continue
            out[role] = ArchFields(spec["name"], tuple(widths), int(spec.get("depth", 1)), float(spec.get("dropout", 0.0)))
        return out

    def budgets(self, d: Any) -> dict[str, dict]:
        from mcbench.benchmarks.tasks import Recipe  # the one definition of a training recipe

        known = {f.name for f in dataclasses.fields(Recipe)}
        if not isinstance(d, dict) or set(d) != set(BUDGET_NAMES):
            self.fail("budgets", f"must give exactly the budgets {', '.join(BUDGET_NAMES)}")
            return {}
        out = {}
        for name, fields_ in d.items():
            if not isinstance(fields_, dict):
                self.fail(f"budgets.{name}", "must be a mapping of Recipe fields")
                continue
            for bad in sorted(set(fields_) - known):
                self.fail(f"budgets.{name}.{bad}", f"not a Recipe field; known: {', '.join(sorted(known))}")
            for req in ("epochs_scratch", "epochs_finetune"):
                if not isinstance(fields_.get(req), int) or fields_[req] < 0:
                    self.fail(f"budgets.{name}.{req}", "required, a non-negative integer")
            out[name] = dict(fields_)
        return out

    def claims(self, v: Any) -> tuple[int, ...]:
        if v is None:
            return ()
        if not isinstance(v, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v):
            self.fail("claims", "must be a list of claim indices (0-based)")
            return ()
        return tuple(v)


def check_against_catalog(settings: dict[str, PaperSetting], n_claims: dict[str, int]) -> list[str]:
    """Problems linking settings to records: a setting without a record, a claim index out of range."""
    out = []
    for key, s in settings.items():
        if key not in n_claims:
            out.append(f"{s.path}: key: no catalog record {key!r}")
            continue
        out += [f"{s.path}: claims: index {i} out of range ({key} has {n_claims[key]} claims)"
                for i in s.claims if i >= n_claims[key]]
    return out
