"""The main job's tier: methods whose catalog record says ``leaderboard_tier: extended`` are left out of a
default sweep (with their reason), run with ``--tier extended|all``, and a record must say why."""
from __future__ import annotations

from pathlib import Path

import pytest

from mcbench.benchmarks import runner
from mcbench.benchmarks.errors import McbenchError
from mcbench.benchmarks.runner import REFERENCES
from mcbench.catalog.problems import Problems
from mcbench.catalog.records import YamlDoc, check_record


def _record(**extra) -> dict:
    return {"schema_version": 1, "key": "x2020y", "family": "pruning", "summary": "s", "status": "implemented", **extra}


def _check(data: dict) -> tuple[object, list[str]]:
    problems = Problems()
    meta = check_record(YamlDoc(Path("x2020y.yaml"), data), problems)
    return meta, problems.lines


def test_extended_tier_needs_a_reason_and_main_takes_none() -> None:
    meta, problems = _check(_record(leaderboard_tier="extended", tier_reason="trains 20 children per seed"))
    assert not problems and meta.leaderboard_tier == "extended" and meta.tier_reason.startswith("trains")
    assert any("tier_reason" in p for p in _check(_record(leaderboard_tier="extended"))[1])
    assert any("tier_reason" in p for p in _check(_record(tier_reason="why"))[1])
    assert any("leaderboard_tier" in p for p in _check(_record(leaderboard_tier="sometimes"))[1])
    assert _check(_record())[0].leaderboard_tier == "main"


def test_default_sweep_skips_the_extended_tier_and_says_why(monkeypatch) -> None:
    keys = [k for k in runner.REGISTRY.keys() if k not in runner.REGISTRY.unusable()]
    slow = keys[0]
    monkeypatch.setattr(runner, "extended_tier", lambda: {slow: "too slow for the hour"})
    warnings: list[str] = []
    main = runner.default_methods(warnings.append)
    assert slow not in main and set(REFERENCES) <= set(main) and len(main) == len(REFERENCES) + len(keys) - 1
    assert any(slow in w and "too slow for the hour" in w for w in warnings)
    assert runner.default_methods(tier="extended") == list(REFERENCES) + [slow]
    assert slow in runner.default_methods(tier="all")
    with pytest.raises(McbenchError, match="unknown tier"):
        runner.default_methods(tier="most")


def test_repository_records_in_the_extended_tier_are_registered() -> None:
    for key, reason in runner.extended_tier().items():
        assert key in runner.REGISTRY and reason.strip(), key
