"""Results store: SQLite (stdlib), one row per (method, task, budget, seed, config hash).

Each row is inserted in its own transaction after the run has finished, so a
sweep killed at any point leaves only complete rows; rerunning skips them.
"""
from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pandas as pd

from mcbench.benchmarks.record import ResultRow



def _sql_type(f: dataclasses.Field) -> str:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "TEXT")
    for py, sql in (("bool", "INTEGER"), ("int", "INTEGER"), ("float", "REAL")):
        if t.startswith(py):
            return sql
    return "TEXT"


FIELDS = dataclasses.fields(ResultRow)
DDL = (
    "CREATE TABLE IF NOT EXISTS results ("
    + ", ".join(f"{f.name} {_sql_type(f)}" for f in FIELDS)
    + ", PRIMARY KEY (run_id), UNIQUE (method, task, budget, seed, config_hash))"
)


class ResultStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path)
        self._conn.execute("PRAGMA journal_mode=WAL")
        with self._conn:
            self._conn.execute(DDL)
            self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """A store written before a field was added to ``ResultRow`` gets the column (NULL in old rows)."""
        have = {r[1] for r in self._conn.execute("PRAGMA table_info(results)")}
        for f in FIELDS:
            if f.name not in have:
                self._conn.execute(f"ALTER TABLE results ADD COLUMN {f.name} {_sql_type(f)}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def has(self, run_id: str) -> bool:
        return self._conn.execute("SELECT 1 FROM results WHERE run_id = ?", (run_id,)).fetchone() is not None

    def insert(self, row: ResultRow, replace: bool = False) -> None:
        d = row.to_dict()
        cols = ", ".join(d)
        marks = ", ".join("?" for _ in d)
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        with self._conn:  # one transaction per row: all or nothing
            self._conn.execute(f"{verb} INTO results ({cols}) VALUES ({marks})", tuple(d.values()))

    def dataframe(self) -> pd.DataFrame:
        df = pd.read_sql_query("SELECT * FROM results ORDER BY task, budget, method, seed", self._conn)
        if "compression_real" in df:
            df["compression_real"] = df["compression_real"].astype(bool)
        return df

    def export(self, out_dir: Path, env: dict | None = None) -> list[Path]:
        """Write runs.csv, runs.json (records) and env.json into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        df = self.dataframe()
        df.to_csv(out / "runs.csv", index=False)
        df.to_json(out / "runs.json", orient="records", indent=1)
        paths = [out / "runs.csv", out / "runs.json"]
        if env is not None:
            (out / "env.json").write_text(json.dumps(env, indent=1, default=str))
            paths.append(out / "env.json")
        return paths
