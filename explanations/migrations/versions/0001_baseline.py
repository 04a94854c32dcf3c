"""Baseline: the schema as ``create_all`` made it before migrations (commit 429ccb6).

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Eight tables: ``decisions``, ``explanation_records`` and ``chain_head`` (with its genesis
row), the Merkle log's ``log_nodes`` and ``log_heads``, ``review_cases``, ``api_keys`` and
``staff_actions``, with the same columns, types, keys and indexes as the table models made.

A database made by ``create_all`` before migrations has no ``alembic_version`` table: this
revision adopts it. Each table it finds is kept as it is (with its rows), each table it lacks
is created (a database only ever touched by ``miaopi keys create`` had no review cases, for
example), the genesis row is added only to an empty chain; Alembic then records the revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS = "sha256:" + "0" * 64
"""The chain's first ``prev_hash``: the head of a chain with no records."""


def _decisions() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("request_sha256", sa.String(length=80), nullable=False),
        sa.Column("application_id", sa.String(length=64), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("ruleset_version", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("response_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_decisions_idempotency_key", "decisions", ["idempotency_key"], unique=True)
    op.create_index("ix_decisions_application_id", "decisions", ["application_id"])


def _explanation_records() -> None:
    op.create_table(
        "explanation_records",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.String(length=40), nullable=False),
        sa.Column("record_json", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=80), nullable=False),
        sa.Column("record_hash", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(
        "ix_explanation_records_decision_id", "explanation_records", ["decision_id"], unique=True
    )


def _chain_head() -> None:
    op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("record_hash", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def _log_nodes() -> None:
    op.create_table(
        "log_nodes",
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx"),
    )


def _log_heads() -> None:
    op.create_table(
        "log_heads",
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("time", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("size"),
    )


def _review_cases() -> None:
    op.create_table(
        "review_cases",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("decision_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("automated_outcome", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(length=200), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("assignee", sa.String(length=200), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_outcome", sa.String(length=16), nullable=True),
        sa.Column("resolution_reason", sa.Text(), nullable=True),
        sa.Column("human_decision_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_cases_decision_id", "review_cases", ["decision_id"])
    op.create_index("ix_review_cases_service", "review_cases", ["service"])
    op.create_index("ix_review_cases_status", "review_cases", ["status"])


def _api_keys() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def _staff_actions() -> None:
    op.create_table(
        "staff_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("detail_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_staff_actions_actor", "staff_actions", ["actor"])


TABLES = {
    "api_keys": _api_keys,
    "chain_head": _chain_head,
    "decisions": _decisions,
    "explanation_records": _explanation_records,
    "log_heads": _log_heads,
    "log_nodes": _log_nodes,
    "review_cases": _review_cases,
    "staff_actions": _staff_actions,
}


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in TABLES.items():
        if name not in existing:
            create()
    head = sa.table(
        "chain_head",
        sa.column("id", sa.Integer()),
        sa.column("seq", sa.Integer()),
        sa.column("record_hash", sa.String()),
    )
    if op.get_bind().execute(sa.select(sa.func.count()).select_from(head)).scalar_one() == 0:
        op.bulk_insert(head, [{"id": 1, "seq": 0, "record_hash": GENESIS}])


def downgrade() -> None:
    """Refused on purpose, not unfinished: going below the baseline would drop the log."""
    raise RuntimeError(
        "the baseline is not reversible: its tables hold the decision log, which is never dropped"
    )
