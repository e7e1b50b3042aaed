"""store/secret_overlaps.py and migration 0021 on a database of the test's own: rows written before 0021
are marked for one look, two processes' rounds never claim the same webhook, and the sweep's query
reaches the rows by the partial index, not by reading the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from history_rows import opened, webhook
from plans import generic_plan, nodes

from webhookd.store import migrate
from webhookd.store.secret_overlaps import _CLAIM, SecretOverlapStore

TENANT = "tnt_overlaps"
CLAIM = timedelta(minutes=5)


async def test_0021_marks_the_rows_before_it_for_one_look(own_database) -> None:
    await migrate.upgrade(own_database, revision="0020")
    async with opened(own_database) as db:
        earlier = await webhook(db, TENANT)

    await migrate.upgrade(own_database)

    async with opened(own_database) as db:
        claimed = await SecretOverlapStore(db).claim_ended(datetime.now(UTC), limit=10, claim=CLAIM)
    assert claimed == [(TENANT, earlier)]


async def test_a_claimed_webhook_is_not_claimed_again_by_another_round(own_database) -> None:
    await migrate.upgrade(own_database)
    now = datetime.now(UTC)
    async with opened(own_database) as db:
        due = [await webhook(db, TENANT) for _ in range(3)]
        await db.execute("UPDATE webhooks SET secret_overlap_ends_at = %(at)s", {"at": now - timedelta(seconds=1)})
        first = await SecretOverlapStore(db).claim_ended(now, limit=2, claim=CLAIM)
        second = await SecretOverlapStore(db).claim_ended(now, limit=10, claim=CLAIM)
        once_the_claim_ends = await SecretOverlapStore(db).claim_ended(now + CLAIM, limit=10, claim=CLAIM)

    assert len(first) == 2
    assert sorted(first + second) == sorted((TENANT, webhook_id) for webhook_id in due)
    assert sorted(once_the_claim_ends) == sorted(first + second)


async def test_the_sweeps_claim_reaches_webhooks_by_the_partial_index(own_database) -> None:
    await migrate.upgrade(own_database)
    async with opened(own_database, timeout_seconds=60.0) as db:  # a busy machine's insert of 5,000 rows
        await webhook(db, TENANT)
        # Many rows with no mark, as most webhooks are most of the time; statistics taken.
        await db.execute(
            "INSERT INTO webhooks SELECT (jsonb_populate_record(NULL::webhooks, to_jsonb(w)"
            " || jsonb_build_object('id', w.id || g, 'secret_overlap_ends_at', NULL))).*"
            " FROM webhooks w, generate_series(1, 5000) g"
        )
        await db.execute("ANALYZE webhooks")
    values = {"now": datetime.now(UTC), "limit": 200, "until": datetime.now(UTC) + CLAIM}
    types = {"now": "timestamptz", "limit": "integer", "until": "timestamptz"}

    plan = generic_plan(own_database, "SELECT 1", _CLAIM, types, values)

    scans = [node for node in nodes(plan) if "Scan" in node["Node Type"] and node.get("Relation Name") == "webhooks"]
    assert {node.get("Index Name") for node in scans} >= {"webhooks_secret_overlap_ends"}
    assert not any(node["Node Type"] == "Seq Scan" for node in scans)
