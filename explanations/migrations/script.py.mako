"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Written by hand: explicit operations, checked against the table models by
tests/explanations/test_migrations.py (SQLite and PostgreSQL). On SQLite, change a table
inside ``with op.batch_alter_table(name) as batch:`` (SQLite's ALTER TABLE cannot do most
changes). Never import the application's models here: a revision must keep doing what it did
when it was written.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
