"""Alembic environment: runs on the connection `store.migrate` hands over, under an advisory lock."""

from __future__ import annotations

from alembic import context

from webhookd.store.tables import metadata

# Any fixed number: serialises concurrent `migrate` runs from several processes.
MIGRATION_LOCK_ID = 7_202_611_26

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, transaction_per_migration=True)
connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})")
try:
    with context.begin_transaction():
        context.run_migrations()
except BaseException:
    # A failed statement aborted the transaction: without this the unlock below failed on that, and its
    # error ("current transaction is aborted") was reported in place of the one that said why.
    connection.rollback()
    raise
finally:
    connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})")
    connection.commit()
