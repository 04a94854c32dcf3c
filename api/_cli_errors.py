"""What the CLI says when a command cannot go on: one line on stderr, Chinese first, then
English, with a hint; exit code 2 for a usage or configuration mistake, 1 for a failure
while running. ``--debug`` (or ``MIAOPI_DEBUG=1``) shows the whole traceback instead.
"""

from __future__ import annotations

import errno
from pathlib import Path

__all__ = ["CliError", "database_path", "explain", "safe_url"]

USAGE = 2
"""Exit code of a mistake in what was asked (an option, a setting, a path, a secret)."""
RUNTIME = 1
"""Exit code of a failure while running (a database that does not answer, a file unreadable)."""

_OURS = {"api", "engine", "adapters", "explanations"}
_DB_HINT = (
    "检查 --database-url 或 DATABASE_URL",
    "check --database-url or DATABASE_URL",
)


class CliError(Exception):
    """A command cannot go on; raised with what happened and what to do about it."""

    def __init__(
        self,
        zh: str,
        en: str,
        *,
        hint_zh: str,
        hint_en: str,
        exit_code: int = RUNTIME,
    ) -> None:
        super().__init__(en)
        self.zh = zh
        self.en = en
        self.hint_zh = hint_zh
        self.hint_en = hint_en
        self.exit_code = exit_code

    def line(self) -> str:
        """``错误 / error: … — 提示 / hint: …`` on one line."""
        text = f"错误 / error: {self.zh} / {self.en} — 提示 / hint: {self.hint_zh} / {self.hint_en}"
        return " ".join(text.split())


def safe_url(url: str) -> str:
    """``url`` with any password hidden (``***``), for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: shown as given, minus anything after '@'
        return url.split("@", 1)[-1] if "@" in url else url


def database_path(url: str) -> Path | None:
    """The file of a SQLite URL (``None`` for another database or an in-memory one)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    return Path(parsed.database)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def explain(exc: BaseException) -> CliError:
    """The one-line error for ``exc``: specific for the families a user can cause, else a
    note that this is a bug (with how to see the traceback)."""
    if isinstance(exc, CliError):
        return exc
    from api.secrets import MissingSecrets

    if isinstance(exc, MissingSecrets):
        zh, _, en = str(exc).partition(" / ")
        return CliError(
            zh if en else "缺少或无法使用密钥",
            en or str(exc),
            hint_zh="设置 MIAOPI_PSEUDONYM_KEY 与 MIAOPI_SIGNING_KEY_FILE（本机演示可用 --demo）",
            hint_en="set MIAOPI_PSEUDONYM_KEY and MIAOPI_SIGNING_KEY_FILE (or --demo on one machine)",
            exit_code=USAGE,
        )
    import pydantic
    import sqlalchemy.exc as sa_exc

    if isinstance(exc, sa_exc.NoSuchModuleError | sa_exc.ArgumentError):
        return CliError(
            "数据库地址无效",
            f"invalid database URL: {_first_line(exc)}",
            hint_zh="形如 sqlite:///var/miaopi.db 或 postgresql+psycopg://用户@主机:5432/库名",
            hint_en="e.g. sqlite:///var/miaopi.db or postgresql+psycopg://user@host:5432/db",
            exit_code=USAGE,
        )
    if isinstance(exc, sa_exc.OperationalError | sa_exc.ProgrammingError):
        text = _first_line(exc)
        if "no such table" in text or ("relation" in text and "does not exist" in text):
            return CliError(
                "数据库中没有秒批的表",
                f"the database has no miaopi tables ({text})",
                hint_zh="确认 --database-url 指向秒批的数据库",
                hint_en="check that --database-url points at the miaopi database",
                exit_code=RUNTIME,
            )
        return CliError(
            "无法打开或访问数据库",
            f"cannot open or use the database: {text}",
            hint_zh=f"确认数据库在运行、地址与权限无误；{_DB_HINT[0]}",
            hint_en=f"check that the database runs, its address and permissions; {_DB_HINT[1]}",
            exit_code=RUNTIME,
        )
    if isinstance(exc, sa_exc.SQLAlchemyError):
        return CliError(
            "数据库出错",
            f"database error: {_first_line(exc)}",
            hint_zh=_DB_HINT[0],
            hint_en=_DB_HINT[1],
            exit_code=RUNTIME,
        )
    if isinstance(exc, pydantic.ValidationError):
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
        )
        return CliError(
            "配置有误",
            f"invalid setting: {where}",
            hint_zh="检查对应的 MIAOPI_* 环境变量或命令行选项",
            hint_en="check the MIAOPI_* environment variable or option named",
            exit_code=USAGE,
        )
    from engine import RulesetInvalid

    if isinstance(exc, RulesetInvalid):
        more = f" (+{len(exc.errors) - 1})" if len(exc.errors) > 1 else ""
        first = str(exc.errors[0]) if exc.errors else str(exc)
        return CliError(
            "规则集或登记库目录无法读取",
            f"a ruleset or the registry catalogue is invalid: {first.splitlines()[0]}{more}",
            hint_zh="用 miaopi ruleset validate 路径 查看全部错误",
            hint_en="miaopi ruleset validate PATH lists every error",
            exit_code=RUNTIME,
        )
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        reason = exc.strerror or _first_line(exc)
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            hint = ("检查文件与文件夹的权限", "check the permissions of the file and its folder")
        elif exc.errno == errno.ENOSPC:
            hint = ("磁盘已满", "the disk is full")
        else:
            hint = ("检查路径", "check the path")
        return CliError(
            "无法读写文件",
            f"cannot use{where}: {reason}",
            hint_zh=hint[0],
            hint_en=hint[1],
            exit_code=RUNTIME,
        )
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] not in _OURS:
        return CliError(
            f"缺少模块 {exc.name}",
            f"the module {exc.name} is not installed (a database driver?)",
            hint_zh="数据库只支持 SQLite（sqlite:///…）与 PostgreSQL（postgresql+psycopg://…）",
            hint_en="the databases supported are SQLite (sqlite:///…) and PostgreSQL "
            "(postgresql+psycopg://…)",
            exit_code=USAGE,
        )
    return CliError(
        "意外错误（程序缺陷）",
        f"unexpected error: {type(exc).__name__}: {_first_line(exc)}",
        hint_zh="加 --debug 或设 MIAOPI_DEBUG=1 重新运行以查看完整回溯，并报告此问题",
        hint_en="run again with --debug or MIAOPI_DEBUG=1 for the traceback, and report it",
        exit_code=RUNTIME,
    )
