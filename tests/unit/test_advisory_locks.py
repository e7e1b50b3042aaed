"""PostgreSQL advisory locks, checked on the source: each process-wide lock has a number of its own.

Two jobs that shared one would skip or wait for each other (the orphan-secret reconciler skipped every
round an ANALYZE held the statistics lock; retention held up every claim of the queue)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "server" / "webhookd"


def lock_ids() -> dict[int, list[str]]:
    """Every module-level `..._LOCK_ID = <number>` in the package, by number."""
    found: dict[int, list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id.endswith("_LOCK_ID"):
                        found[node.value.value].append(f"{path.relative_to(PACKAGE)}:{target.id}")
    return found


def test_the_package_has_the_locks_this_test_reads() -> None:
    names = {name.rpartition(":")[2] for holders in lock_ids().values() for name in holders}

    assert {"ORPHAN_SECRETS_LOCK_ID", "STATISTICS_LOCK_ID", "RETENTION_LOCK_ID", "CLAIM_LOCK_ID"} <= names


def test_no_two_locks_share_a_number() -> None:
    shared = {number: holders for number, holders in lock_ids().items() if len(holders) > 1}

    assert shared == {}
