"""Alembic environment: runs the revisions in ``versions/`` on the connection it is handed.

``explanations.migrate.upgrade`` (``miaopi db upgrade``, and every service at start) opens the
transaction, takes the lock, and hands its connection over in ``config.attributes``; the
revisions then run inside that one transaction. Run by the ``alembic`` command itself (to
draft a revision with ``--autogenerate``, say) it connects to ``-x url=…`` or
``DATABASE_URL`` instead, without the lock: use ``miaopi db upgrade`` on a real database.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

config = context.config


def _models_metadata() -> sa.MetaData:
    """Every table model, for ``alembic revision --autogenerate`` drafts (never at runtime)."""
    from sqlmodel import SQLModel

    import api.auth  # noqa: F401
    import explanations.log
    import explanations.review
    import explanations.store  # noqa: F401

    return SQLModel.metadata


def _configure_and_run(connection: sa.Connection, metadata: sa.MetaData | None) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit(
        "不支持离线（--sql）模式 / offline (--sql) mode is not supported: run `miaopi db upgrade`"
    )

handed: sa.Connection | None = config.attributes.get("connection")
if handed is not None:
    _configure_and_run(handed, None)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit(
            "需要数据库地址 / a database is needed: `alembic -x url=… …` or DATABASE_URL"
        )
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            autogenerate = bool(getattr(config.cmd_opts, "autogenerate", False))
            _configure_and_run(conn, _models_metadata() if autogenerate else None)
            conn.commit()
    finally:
        engine.dispose()
