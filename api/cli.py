"""The ``miaopi`` console script: serve, decide, ruleset validate/test, audit verify, demo data."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="秒批 instant-approval decision engine",
    pretty_exceptions_show_locals=False,  # a --debug traceback must not print secrets
)
ruleset_app = typer.Typer(no_args_is_help=True, help="规则集 validate and test rulesets")
audit_app = typer.Typer(no_args_is_help=True, help="审计 verify the explanation record chain")
demo_app = typer.Typer(
    no_args_is_help=True, help="演示数据 demo registries and sample applications"
)
keys_app = typer.Typer(
    no_args_is_help=True, help="密钥 API keys for staff and the platform; the log's signing key"
)
receipt_app = typer.Typer(no_args_is_help=True, help="回执 check a decision's receipt offline")
log_app = typer.Typer(no_args_is_help=True, help="日志 the signed Merkle log")
db_app = typer.Typer(
    no_args_is_help=True, help="数据库 the schema: upgrade it with the shipped migrations"
)
app.add_typer(ruleset_app, name="ruleset")
app.add_typer(keys_app, name="keys")
app.add_typer(receipt_app, name="receipt")
app.add_typer(log_app, name="log")
app.add_typer(audit_app, name="audit")
app.add_typer(demo_app, name="demo")
app.add_typer(db_app, name="db")

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="registry data folder [env MIAOPI_DATA_DIR]")
]
Rulesets = Annotated[
    Path | None, typer.Option("--rulesets", help="rulesets folder [env MIAOPI_RULESETS_DIR]")
]
Registries = Annotated[
    Path | None,
    typer.Option(
        "--registries",
        help="registry catalogue file [env MIAOPI_REGISTRIES; default: registries.yaml beside "
        "the rulesets, or in a folder above the file checked]",
    ),
]
DbUrl = Annotated[Optional[str], typer.Option("--database-url", help="[env DATABASE_URL]")]  # noqa: UP045


def _fail(zh: str, en: str, hint_zh: str, hint_en: str, *, exit_code: int = 2) -> Exception:
    """The one-line error to raise (``错误 / error: … — 提示 / hint: …``); exit 2 by default."""
    from api._cli_errors import CliError

    return CliError(zh, en, hint_zh=hint_zh, hint_en=hint_en, exit_code=exit_code)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _show_version(value: bool) -> None:
    if not value:
        return
    from importlib import metadata

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    typer.echo(f"miaopi {version('miaopi')} (durable_rules {version('durable-rules')})")
    raise typer.Exit()


@app.callback()
def _root(
    _version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_show_version,
        is_eager=True,
        help="print the version (and durable_rules') and exit",
    ),
    _debug: bool = typer.Option(
        False,
        "--debug",
        help="on an error, show the whole traceback instead of one line [env MIAOPI_DEBUG=1]",
    ),
) -> None:
    """秒批 instant-approval decision engine"""
    from api.logging import configure_logging

    # Every command logs to stderr, warnings and worse: stdout is the command's answer (a key,
    # a JSON line) that scripts read. `serve` raises the level to the configured one.
    configure_logging("WARNING")


def _settings(**overrides: object) -> Any:
    from api.settings import Settings

    return Settings.from_env(**overrides)


def _check_folders(settings: Any, *, registry_url: str | None = None, data: bool = True) -> None:
    """The rulesets folder exists, and the registry data folder when a registry reads files."""
    from api._cli_errors import USAGE, CliError

    if not settings.rulesets_dir.is_dir():
        raise CliError(
            f"规则集文件夹不存在：{settings.rulesets_dir}",
            f"no rulesets folder at {settings.rulesets_dir}",
            hint_zh="用 --rulesets 或 MIAOPI_RULESETS_DIR 指定",
            hint_en="give it with --rulesets or MIAOPI_RULESETS_DIR",
            exit_code=USAGE,
        )
    if not data or registry_url or settings.data_dir.is_dir():
        return
    from api.deployment import catalogue_path
    from engine import RulesetInvalid
    from engine.registries import load_catalogue

    try:
        catalogue = load_catalogue(catalogue_path(settings.rulesets_dir, settings.registries))
        if all(spec.kind == "http" for spec in catalogue):
            return  # no registry is read from a file
    except (RulesetInvalid, OSError):
        pass  # reported where the catalogue is loaded
    raise CliError(
        f"登记库数据文件夹不存在或不是文件夹：{settings.data_dir}",
        f"no registry data folder at {settings.data_dir}",
        hint_zh="用 --data-dir 或 MIAOPI_DATA_DIR 指定；演示数据可用 miaopi demo generate --out 文件夹 生成",
        hint_en="give it with --data-dir or MIAOPI_DATA_DIR; make demo data with miaopi demo generate --out DIR",
        exit_code=USAGE,
    )


def _check_database(url: str) -> None:
    """Before the workers start: the URL parses, its driver loads, a database server answers,
    and a SQLite file could be made where the URL says."""
    from sqlalchemy import create_engine, text

    from api._cli_errors import USAGE, CliError, database_path

    path = database_path(url)  # raises on what is not a URL at all
    if path is not None:
        existing = next(p for p in (path, *path.parents) if p.exists())
        if existing == path and not path.is_file():
            problem = ("不是文件", "is not a file")
        elif existing != path and not existing.is_dir():
            problem = ("所在位置不是文件夹", "is under something that is not a folder")
        elif not os.access(existing, os.W_OK):
            problem = ("无写入权限", "is not writable")
        else:
            return
        raise CliError(
            f"SQLite 数据库 {path} {problem[0]}",
            f"the SQLite database {path} {problem[1]}",
            hint_zh="检查 --database-url 或 DATABASE_URL",
            hint_en="check --database-url or DATABASE_URL",
            exit_code=USAGE,
        )
    if url.startswith("sqlite"):
        return  # in memory
    postgres = url.startswith("postgresql")
    engine = create_engine(url, connect_args={"connect_timeout": 10} if postgres else {})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def _generate_demo(
    out: Path, *, people: int = 10_000, seed: int = 20161, rulesets: Path | None
) -> Any:
    """``generate_demo_data`` with a progress bar on stderr."""
    from adapters.demo import generate_demo_data
    from api._progress import progress

    steps = {"people": "生成演示人员 / people", "files": "写入登记库文件 / files"}
    with progress(steps["people"], total=people) as bar:
        return generate_demo_data(
            out,
            people=people,
            seed=seed,
            rulesets_dir=rulesets,
            progress=lambda step, done, total: bar(done, total=total, description=steps[step]),
        )


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = typer.Option(
        os.cpu_count() or 1,
        help="processes (default: one per core); durable_rules runs on one thread per process",
    ),
    data_dir: DataDir = None,
    rulesets: Rulesets = None,
    registries: Registries = None,
    database_url: DbUrl = None,
    demo: bool = typer.Option(
        False, "--demo", help="(re)generate the demo registries first unless they are current"
    ),
    registry_url: Optional[str] = typer.Option(  # noqa: UP045
        None,
        "--registry-url",
        help="ask every catalogued registry over HTTP at this base URL (e.g. the simulator) "
        "[env MIAOPI_REGISTRY_URL]",
    ),
    no_migrate: bool = typer.Option(
        False,
        "--no-migrate",
        help="do not upgrade the schema at start: refuse to start unless it is at head "
        "(run `miaopi db upgrade` first) [env MIAOPI_MIGRATE=0]",
    ),
) -> None:
    """Run the HTTP service (uvicorn). It upgrades the schema at start, under a lock."""
    import uvicorn

    settings = _settings(
        data_dir=data_dir, rulesets_dir=rulesets, registries=registries, database_url=database_url
    )
    if demo:
        from adapters.demo import demo_is_current

        if not demo_is_current(settings.data_dir, settings.rulesets_dir):
            typer.echo(
                f"生成演示数据 / generating demo registries in {settings.data_dir} …", err=True
            )
            _generate_demo(settings.data_dir, rulesets=settings.rulesets_dir)
    if demo:
        os.environ["MIAOPI_DEMO"] = "1"
        settings = settings.model_copy(update={"demo": True})
    _check_folders(settings, registry_url=registry_url or settings.registry_url)
    _check_database(settings.database_url)
    settings.secrets()  # refuses to start without them (one line, exit 2)
    if no_migrate or not settings.migrate:
        _require_head(settings.database_url)
        os.environ["MIAOPI_MIGRATE"] = "0"
    if demo:
        keys_file = _demo_keys(settings)
        typer.echo(f"演示用API密钥 / demo API keys (one per role): {keys_file}", err=True)
    if registry_url:
        os.environ["MIAOPI_REGISTRY_URL"] = registry_url
    os.environ["MIAOPI_DATA_DIR"] = str(settings.data_dir)
    os.environ["MIAOPI_RULESETS_DIR"] = str(settings.rulesets_dir)
    if settings.registries is not None:
        os.environ["MIAOPI_REGISTRIES"] = str(settings.registries)
    os.environ["DATABASE_URL"] = settings.database_url
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker counts into files here; a scrape of any worker sums them all. A fresh
        # folder per start: counters begin at zero, as they do with one process.
        metrics_dir = tempfile.mkdtemp(prefix="miaopi-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    committer = None
    wanted = os.environ.get("MIAOPI_COMMIT_PROCESS", "auto")
    if wanted == "1" or (wanted == "auto" and settings.database_url.startswith("sqlite")):
        # On SQLite the workers otherwise take turns at one file's lock; PostgreSQL serves
        # concurrent writers itself (measured: a commit process there cost 15% at 8 clients).
        from api.commit_process import CommitProcess

        committer = CommitProcess()
        if committer.start():
            os.environ["MIAOPI_COMMIT_SOCKET"] = committer.path
        else:
            typer.echo(
                "提交进程未能启动，各工作进程自行写入 / the commit process did not start; "
                "each worker writes its own decisions",
                err=True,
            )
    try:
        uvicorn.run(
            "api.main:app",
            host=host,
            port=port,
            workers=workers,
            http="httptools",
            loop="uvloop",
            log_level="warning",
            access_log=False,
        )
    finally:
        if committer is not None:
            committer.stop()  # after the workers: every decision they sent is written
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _require_head(url: str) -> None:
    """Exit 2 with one line unless the database's schema is at head."""
    from explanations.migrate import current

    state = _db_call(lambda: current(url), url)
    if not state.at_head:
        typer.echo(
            f"数据库结构不是最新（{state.describe_zh()}），未启动：请先运行 miaopi db upgrade / "
            f"not started: the database schema is not at head ({state.describe_en()}); "
            "run `miaopi db upgrade` first",
            err=True,
        )
        raise typer.Exit(2)


def _db_call(call: Any, url: str) -> Any:
    """``call()``, with a missing SQLite file or an unreachable database as one line, exit 2."""
    import sqlalchemy as sa

    try:
        return call()
    except FileNotFoundError:
        typer.echo(f"数据库不存在 / no database at {url.split('///', 1)[-1]}", err=True)
        raise typer.Exit(2) from None
    except sa.exc.SQLAlchemyError as exc:
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        typer.echo(f"无法访问数据库 / cannot use the database {shown}: {reason}", err=True)
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade(database_url: DbUrl = None) -> None:
    """Bring the database to the newest schema (an empty one is created; one from before
    migrations is adopted). Several may run at once: one upgrades, the others wait."""
    from api.logging import configure_logging
    from explanations.migrate import SchemaNotCurrent, upgrade

    configure_logging("WARNING")
    settings = _settings(database_url=database_url)
    try:
        done = _db_call(lambda: upgrade(settings.database_url), settings.database_url)
    except SchemaNotCurrent as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    before = done.before
    if not done.changed:
        typer.echo(f"数据库已是最新 / already at head: {done.after}")
    elif before.legacy:
        typer.echo(
            f"已接管迁移之前的数据库并升级到 {done.after} / adopted the database from before "
            f"migrations and upgraded it to {done.after}"
        )
    else:
        typer.echo(f"已升级 / upgraded: {before.revision or '(empty)'} → {done.after} (head)")


@db_app.command("current")
def db_current(database_url: DbUrl = None) -> None:
    """Show the database's schema revision and the newest (reads only; creates nothing).

    Exit 0 at head, 1 when `miaopi db upgrade` has work to do, 2 when there is no database.
    """
    from explanations.migrate import current

    settings = _settings(database_url=database_url)
    _refuse_missing_sqlite(settings.database_url)
    state = _db_call(lambda: current(settings.database_url), settings.database_url)
    if state.at_head:
        typer.echo(f"{state.revision} (head) 数据库结构是最新的 / the schema is at head")
        return
    typer.echo(f"{state.describe_zh()} / {state.describe_en()}: miaopi db upgrade")
    raise typer.Exit(1)


@app.command()
def decide(
    file: Path,
    data_dir: DataDir = None,
    rulesets: Rulesets = None,
    registries: Registries = None,
    text: bool = typer.Option(True, help="print the plain-language explanation too"),
) -> None:
    """Decide one application JSON file without storing it (a dry run)."""
    import pydantic

    from api.deployment import load_deployment
    from api.logging import configure_logging
    from api.service import DecisionRequest, DecisionService, RequestRejected
    from api.window import check_submitted_at
    from explanations import render_text

    configure_logging("ERROR")
    settings = _settings(data_dir=data_dir, rulesets_dir=rulesets, registries=registries)
    try:
        body = json.loads(file.read_text(encoding="utf-8"))
        request = DecisionRequest.model_validate(body)
    except (OSError, ValueError, pydantic.ValidationError) as exc:
        raise _fail(
            f"无法读取申请 {file}",
            f"cannot read the application {file}: {_one_line(exc)}",
            "申请须为 UTF-8 的 JSON 文件，格式同 POST /v1/decisions 的请求体",
            "the application is a UTF-8 JSON file shaped like the body of POST /v1/decisions",
        ) from None
    _check_folders(settings)
    deployment = load_deployment(
        rulesets_dir=settings.rulesets_dir,
        data_dir=settings.data_dir,
        registries=settings.registries,
    )
    service = DecisionService(
        catalog=deployment.rulesets,
        adapters=deployment.adapters,
        registries=deployment.registries,
        store=None,
        pseudonym_key=settings.pseudonym_key or "dry-run: pseudonyms are not kept",
    )
    try:
        # The window the service applies (api.window): a date in the future or before the
        # service existed is refused here too, not decided (it could only decide wrongly).
        check_submitted_at(
            request,
            now=service.clock(),
            catalog=service.catalog,
            max_skew=dt.timedelta(seconds=settings.max_clock_skew_s),
        )
        response, record = service.decide_unstored(request)
    except RequestRejected as exc:
        typer.echo(f"{exc.message_zh} / {exc.message_en}", err=True)
        for f in exc.fields:
            typer.echo(f"  {'.'.join(str(p) for p in f.get('loc', []))}: {f.get('msg')}", err=True)
        raise typer.Exit(2) from None
    finally:
        service.close()
    typer.echo(json.dumps(response, ensure_ascii=False, indent=2))
    if text:
        typer.echo("\n" + render_text(record, lang="zh"))


def _catalogue(path: Path, registries: Path | None) -> Any:
    """The registry catalogue to check ``path`` against, or ``None`` (with a note) if none."""
    from engine import RulesetInvalid
    from engine.registries import find_catalogue, load_catalogue

    explicit = registries or (
        Path(os.environ["MIAOPI_REGISTRIES"]) if os.environ.get("MIAOPI_REGISTRIES") else None
    )
    found = (
        explicit
        or find_catalogue(path)
        or (
            Path("rulesets/registries.yaml") if Path("rulesets/registries.yaml").is_file() else None
        )
    )
    if found is None:
        typer.echo(
            "注意：未找到登记库目录，证据未与目录核对 / note: no registry catalogue found; "
            "evidence is not checked against one (use --registries)",
            err=True,
        )
        return None
    try:
        return load_catalogue(found)
    except RulesetInvalid as exc:
        for err in exc.errors:
            typer.echo(str(err), err=True)
        typer.echo("登记库目录有误 / the registry catalogue is invalid", err=True)
        raise typer.Exit(1) from None


def _load_all(path: Path, registries: Path | None) -> tuple[list[Any], list[Any]]:
    """Every ruleset file at ``path`` (a file, or any folder), loaded; and the errors."""
    from engine import RulesetInvalid, load_ruleset
    from engine.catalog import ruleset_files

    if not path.exists():
        raise _fail(
            f"找不到 {path}", f"not found: {path}", "检查路径", "check the path", exit_code=2
        )
    files = [path] if path.is_file() else ruleset_files(path)
    if not files:
        raise _fail(
            f"{path} 下没有规则集文件（*.yaml）",
            f"no ruleset files (*.yaml) under {path}",
            "规则集文件放在 规则集文件夹/事项编码/版本.yaml",
            "ruleset files live in RULESETS/<service>/<version>.yaml",
            exit_code=1,
        )
    sources = _catalogue(path, registries)
    loaded, errors = [], []
    for f in files:
        try:
            loaded.append(load_ruleset(f, sources=sources))
        except RulesetInvalid as exc:
            errors.extend(exc.errors)
    return loaded, errors


def _naming_notes(rs: Any) -> list[str]:
    """Where a file would not be served under its current name or folder."""
    notes = []
    p = Path(rs.path)
    if rs.doc.status != "draft" and p.stem != rs.version:
        notes.append(
            f"注意：{p.name} 须命名为 {rs.version}.yaml 才会提供服务 / note: served only as "
            f"{rs.version}.yaml"
        )
    if rs.doc.status != "draft" and p.parent.name != rs.service:
        notes.append(
            f"注意：须放在 {rs.service}/ 文件夹中才会提供服务 / note: served only from a folder "
            f"named {rs.service}/"
        )
    return notes


@ruleset_app.command("validate")
def ruleset_validate(path: Path, registries: Registries = None) -> None:
    """Check a ruleset file (a draft may have any name) or every ruleset in any folder.

    Errors name file:line:column; evidence is checked against the registry catalogue.
    """
    from engine import RulesetCatalog, RulesetInvalid
    from engine.registries import CATALOGUE_FILE

    if path.is_file() and path.name == CATALOGUE_FILE:  # the catalogue itself
        catalogue = _catalogue(path, path)
        typer.echo(f"OK {catalogue.path}: {len(catalogue)} 个登记库 / registries")
        return
    if path.is_dir() and (path / CATALOGUE_FILE).is_file():
        catalogue = _catalogue(path / CATALOGUE_FILE, registries)
        if catalogue is not None:
            typer.echo(f"OK {catalogue.path}: {len(catalogue)} 个登记库 / registries")
    from engine import EngineFault, RulesetError
    from engine.decision import warm_up

    loaded, errors = _load_all(path, registries)
    try:
        RulesetCatalog(loaded)
    except RulesetInvalid as exc:
        errors.extend(exc.errors)
    for rs in list(loaded):
        try:
            warm_up(rs)
        except EngineFault as exc:
            loaded.remove(rs)
            errors.append(
                RulesetError(
                    f"规则引擎无法加载此规则集 / durable_rules cannot load this ruleset: {exc}",
                    file=rs.path,
                    line=1,
                    column=1,
                )
            )
    for err in sorted(errors, key=lambda e: (e.file, e.line or 0, e.column or 0)):
        typer.echo(str(err), err=True)
    for rs in loaded:
        typer.echo(
            f"OK {rs.key} {rs.doc.status} {rs.content_hash} ({len(rs.criteria)} criteria) {rs.path}"
        )
        for note in _naming_notes(rs):
            typer.echo(f"   {note}")
    if errors:
        typer.echo(f"{len(errors)} 个错误 / error(s)", err=True)
        raise typer.Exit(1)


@ruleset_app.command("test")
def ruleset_test(
    path: Path,
    registries: Registries = None,
    coverage: bool = typer.Option(
        False, "--coverage", help="report criteria never PASS/FAIL/UNKNOWN and rules never matched"
    ),
) -> None:
    """Run the named examples of a ruleset file (or all in any folder) on both evaluators."""
    from engine.coverage import measure, render
    from engine.examples import run_examples

    loaded, errors = _load_all(path, registries)
    for err in errors:
        typer.echo(str(err), err=True)
    passed = failed = 0
    reports = []
    for rs in loaded:
        results = run_examples(rs)
        if not results:
            typer.echo(f"---- {rs.key}: 无测试 / no tests")
        for result in results:
            mark = "PASS" if result.ok else "FAIL"
            typer.echo(f"{mark} {rs.key}: {result.name}")
            for problem in result.problems:
                typer.echo(f"     {problem}")
            passed += result.ok
            failed += not result.ok
        if coverage:
            reports.append(render(measure(rs, results)))
    if reports:
        typer.echo("")
        typer.echo("\n\n".join(reports))
    typer.echo(f"{passed} passed, {failed} failed" + (f", {len(errors)} invalid" if errors else ""))
    if failed or errors or not passed:
        raise typer.Exit(1)


@ruleset_app.command("diff")
def ruleset_diff(old: Path, new: Path, registries: Registries = None) -> None:
    """What changed from OLD to NEW (criteria, parameters, tables, outputs), in words."""
    from engine import RulesetInvalid, load_ruleset
    from engine.diff import diff_rulesets

    docs = []
    for p in (old, new):
        try:
            docs.append(load_ruleset(p, sources=_catalogue(p, registries)).doc)
        except (RulesetInvalid, OSError) as exc:
            for err in getattr(exc, "errors", [exc]):
                typer.echo(str(err), err=True)
            raise typer.Exit(1) from None
    typer.echo(diff_rulesets(docs[0], docs[1]))


@ruleset_app.command("list")
def ruleset_list(
    rulesets: Rulesets = None,
    data_dir: DataDir = None,
    registries: Registries = None,
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Every ruleset and registry as the service would load them: servable or not, and why."""
    from api.deployment import load_deployment
    from api.logging import configure_logging

    configure_logging("CRITICAL")
    settings = _settings(data_dir=data_dir, rulesets_dir=rulesets, registries=registries)
    _check_folders(settings)
    deployment = load_deployment(
        rulesets_dir=settings.rulesets_dir,
        data_dir=settings.data_dir,
        registries=settings.registries,
    )
    health = deployment.health()
    if as_json:
        typer.echo(json.dumps(health, ensure_ascii=False, indent=2))
        return
    typer.echo("登记库 / registries:")
    if health["catalogue"]["problem"]:
        typer.echo(f"  目录有误 / catalogue invalid: {health['catalogue']['problem']}")
    for r in health["registries"]:
        state = (
            f"OK {r['records']} 条记录 / records"
            if r["loaded"]
            else f"不可用 / UNAVAILABLE: {r['problem']}"
        )
        typer.echo(f"  {r['id']:<22} {r['name_zh']:<12} {state}")
    typer.echo("规则集 / rulesets:")
    for r in health["rulesets"]:
        period = f"{r['effective_from'] or '?'}…{r['effective_to'] or ''}"
        state = "可提供服务 / servable" if r["servable"] else "不可提供服务 / NOT servable"
        typer.echo(f"  {r['service']}@{r['version'] or '?'} {r['status'] or '?'} {period} {state}")
        for problem in r["problems"]:
            typer.echo(f"      {problem}")
    if not deployment.healthy:
        raise typer.Exit(1)


@ruleset_app.command("schema")
def ruleset_schema(
    catalogue: bool = typer.Option(
        False, "--catalogue", help="the registry catalogue's schema instead"
    ),
) -> None:
    """Print the JSON Schema of a ruleset file (generated from the model), for editors."""
    from engine.schema import catalogue_schema
    from engine.schema import ruleset_schema as schema

    typer.echo(
        json.dumps(catalogue_schema() if catalogue else schema(), ensure_ascii=False, indent=2)
    )


PublicKeys = Annotated[
    Optional[list[Path]],  # noqa: UP045
    typer.Option(
        "--public-key",
        help="PEM file(s) of the log's signing key(s) (a private key file serves too) "
        "[default: MIAOPI_SIGNING_KEY_FILE, or the demo's key]",
    ),
]


def _public_keys(paths: list[Path] | None, settings: Any) -> dict[str, Any]:
    from explanations.log import load_public_keys

    if not paths:
        if settings.signing_key_file is not None:
            paths = [settings.signing_key_file, *settings.trusted_public_keys]
        elif (settings.secrets_dir / "signing-key.pem").exists():
            paths = [settings.secrets_dir / "signing-key.pem"]
        else:
            return {}
    try:
        return load_public_keys(paths)
    except (OSError, ValueError) as exc:
        raise _fail(
            "无法读取公钥",
            f"cannot read the public key: {_one_line(exc)}",
            "--public-key 须为 PEM 格式的 Ed25519 公钥（或私钥）文件",
            "--public-key takes a PEM file of the Ed25519 public (or private) key",
        ) from None


@audit_app.command("verify")
def audit_verify(
    database_url: DbUrl = None,
    checkpoint: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(
            "--checkpoint",
            help="a checkpoint saved outside the database (JSON, JSON lines, or a receipt); "
            "the log must still contain it",
        ),
    ] = None,
    public_key: PublicKeys = None,
) -> None:
    """Check every record, row, log node and signed head; exit 1 naming each problem."""
    from api._progress import progress
    from explanations import DecisionStore
    from explanations.log import read_checkpoints

    settings = _settings(database_url=database_url)
    _refuse_missing_sqlite(settings.database_url)
    keys = _public_keys(public_key, settings)
    saved = []
    if not public_key and not settings.signing_key_file and keys:
        # The demo's own key is only a guess: use it only when it signed this log.
        store = DecisionStore(settings.database_url)
        try:
            head = store.checkpoint()
        finally:
            store.dispose()
        if head is not None and head.key_id not in keys:
            keys = {}
    for path in checkpoint or []:
        try:
            saved.extend(read_checkpoints(path))
        except (OSError, ValueError) as exc:
            raise _fail(
                f"无法读取检查点 {path}",
                f"cannot read the checkpoint {path}: {_one_line(exc)}",
                "检查点文件由 miaopi log checkpoint --out 写出（JSON 或 JSON lines，或回执）",
                "a checkpoint file is written by miaopi log checkpoint --out (JSON, JSON lines, "
                "or a receipt)",
            ) from None
    store = DecisionStore(settings.database_url)
    try:
        with progress("校验记录 / verifying records", total=store.count()) as bar:
            count, problems = store.verify(
                keys=keys or None, checkpoints=saved, progress=lambda n: bar(n)
            )
    finally:
        store.dispose()
    for p in problems:
        where = f"seq={p.seq} decision={p.decision_id}" if p.seq or p.decision_id else "log"
        typer.echo(f"TAMPERED {where}: {p.message}")
    if problems:
        typer.echo(f"校验失败 / verification FAILED: {len(problems)} problem(s) in {count} records")
        raise typer.Exit(1)
    signed = "signatures checked" if keys else "signatures NOT checked (no public key given)"
    against = f", consistent with {len(saved)} saved checkpoint(s)" if saved else ""
    typer.echo(f"校验通过 / verified: {count} records, chain and log intact, {signed}{against}")


def _refuse_missing_sqlite(url: str) -> None:
    """A read-only command never creates a database: a missing SQLite file is an error.

    (SQLite would create an empty file on connect, and the store its folder.)
    """
    from api._cli_errors import USAGE, CliError, database_path

    path = database_path(url)
    if path is not None and not path.is_file():
        raise CliError(
            f"数据库不存在：{path}",
            f"no database at {path}",
            hint_zh="检查 --database-url 或 DATABASE_URL；此命令只读，不会新建数据库",
            hint_en="check --database-url or DATABASE_URL; this command only reads and creates none",
            exit_code=USAGE,
        )


@audit_app.command("replay")
def audit_replay(
    decision_id: Annotated[
        str | None, typer.Argument(help="one decision; all when omitted")
    ] = None,
    rulesets: Rulesets = None,
    database_url: DbUrl = None,
) -> None:
    """Re-decide stored records from their recorded ruleset version and evidence; exit 1 on any difference."""
    from api._progress import progress
    from api.settings import Settings
    from engine import RulesetCatalog
    from explanations import DecisionStore, ExplanationRecordV1, replay
    from explanations.record import parse_record

    settings = Settings.from_env(rulesets_dir=rulesets, database_url=database_url)
    _refuse_missing_sqlite(settings.database_url)
    _check_folders(settings, data=False)
    catalog = RulesetCatalog.scan(settings.rulesets_dir)
    store = DecisionStore(settings.database_url)
    checked = differing = 0
    try:
        if decision_id is not None:
            record = store.get_record(decision_id)
            if record is None:
                raise _fail(
                    f"未找到该决定 {decision_id}",
                    f"no decision {decision_id}",
                    "检查决定编号与 --database-url",
                    "check the decision id and --database-url",
                )
            records: Iterable[ExplanationRecordV1] = [record]
        else:
            # a person's decision has no rules to replay: it is verified, not re-decided
            parsed = (
                parse_record({**json.loads(r.record_json), "record_hash": r.record_hash})
                for r in store.iter_records()
            )
            records = (p for p in parsed if isinstance(p, ExplanationRecordV1))
        total = 1 if decision_id is not None else store.count()
        with progress("复算记录 / replaying records", total=total) as bar:
            for record in records:
                checked += 1
                if checked % 100 == 0:
                    bar(checked)
                ruleset = catalog.get(record.service, record.ruleset_version)
                if ruleset is None:
                    differing += 1
                    typer.echo(
                        f"DIFFERS {record.decision_id}: ruleset {record.service}@{record.ruleset_version} is not in {settings.rulesets_dir}"
                    )
                    continue
                result = replay(record, ruleset)
                if not result.identical:
                    differing += 1
                    typer.echo(f"DIFFERS {record.decision_id}: {'; '.join(result.differences)}")
    finally:
        store.dispose()
    if differing:
        typer.echo(f"复算不一致 / replay FAILED: {differing} of {checked} records differ")
        raise typer.Exit(1)
    typer.echo(f"复算一致 / replayed: {checked} records, all identical")


@audit_app.command("export")
def audit_export(
    database_url: DbUrl = None,
    out: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--out", help="write to this file instead of stdout (refused if it exists)"
    ),
    after_seq: int = typer.Option(0, "--after-seq", min=0, help="only records after this one"),
) -> None:
    """Every stored record as JSON lines, exactly as hashed (as ``GET /v1/audit/export``)."""
    import sys

    from api._progress import progress
    from explanations import DecisionStore

    settings = _settings(database_url=database_url)
    _refuse_missing_sqlite(settings.database_url)
    if out is not None and out.exists():
        raise _fail(
            f"文件已存在：{out}",
            f"{out} exists: not overwritten",
            "换一个 --out 文件名，或先移走原文件",
            "choose another --out file, or move the old one away",
        )
    store = DecisionStore(settings.database_url)
    written = 0
    try:
        total = store.count()
        target = out.open("x", encoding="utf-8") if out is not None else sys.stdout
        try:
            with progress("导出记录 / exporting records", total=total) as bar:
                for row in store.iter_records():
                    if row.seq <= after_seq:
                        continue
                    line = {
                        "seq": row.seq,
                        "record_hash": row.record_hash,
                        "record": json.loads(row.record_json),
                    }
                    target.write(json.dumps(line, ensure_ascii=False) + "\n")
                    written += 1
                    if row.seq % 100 == 0:
                        bar(row.seq)
        finally:
            if out is not None:
                target.close()
    finally:
        store.dispose()
    if out is not None:
        typer.echo(f"已导出 / exported {written} records to {out}", err=True)


@audit_app.command("schema")
def audit_schema() -> None:
    """Print the JSON Schema of the explanation record (generated from the pydantic model)."""
    from explanations import ExplanationRecordV1

    typer.echo(json.dumps(ExplanationRecordV1.model_json_schema(), ensure_ascii=False, indent=2))


@demo_app.command("generate")
def demo_generate(
    out: Path = typer.Option(Path("var/demo"), "--out", help="folder to write"),
    people: int = typer.Option(10_000, min=0, help="how many people the bulk data has"),
    seed: int = 20161,
    rulesets: Path = typer.Option(
        Path("rulesets"), "--rulesets", help="whose demo/ folders add each service's samples"
    ),
) -> None:
    """Write the deterministic demo registries and sample applications."""
    summary = _generate_demo(out, people=people, seed=seed, rulesets=rulesets)
    typer.echo(summary.model_dump_json(indent=2))


def _demo_keys(settings: Any) -> Path:
    """One API key per role for the demo, written beside the demo secrets (0600).

    Only ``--demo`` does this: a real deployment makes its keys with ``miaopi keys create``
    and never keeps them in a file the service can read.
    """
    from api.auth import Role as Roles

    path: Path = settings.secrets_dir / "demo-keys.json"
    keys = _key_store(settings.database_url)
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if all(keys.authenticate(known.get(r.value, "")) for r in Roles):
        return path
    made = {
        r.value: keys.create(r, label="demo", created_by="miaopi serve --demo")[1] for r in Roles
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(made, out, indent=2)
    return path


Role = Annotated[str, typer.Option("--role", help="platform | reviewer | policy | auditor | ops")]


def _key_store(database_url: str | None) -> Any:
    from api.auth import KeyStore
    from explanations import DecisionStore

    settings = _settings(database_url=database_url)
    store = DecisionStore(settings.database_url)
    keys = KeyStore(store.engine)
    keys.create_schema()
    return keys


@keys_app.command("create")
def keys_create(
    role: Role,
    label: str = typer.Option("", help="who or what holds the key (shown in listings)"),
    database_url: DbUrl = None,
) -> None:
    """Make an API key for a role; the key is printed once (stdout) and only its hash is kept."""
    from api.auth import Role as Roles

    if role not in Roles.__members__.values():
        raise _fail(
            f"未知角色 {role!r}",
            f"unknown role {role!r}",
            f"可用角色：{'、'.join(Roles)}",
            f"use one of {', '.join(Roles)}",
        )
    keys = _key_store(database_url)
    key_id, key = keys.create(role, label=label, created_by=os.environ.get("USER", "cli"))
    typer.echo(f"已创建 / created key {key_id} for role {role}; it is shown only now:", err=True)
    typer.echo(key)


@keys_app.command("list")
def keys_list(database_url: DbUrl = None) -> None:
    """Every API key: id, role, label, created, revoked (never the secret)."""
    _refuse_missing_sqlite(_settings(database_url=database_url).database_url)
    for row in _key_store(database_url).list():
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        typer.echo(f"{row.id}  {row.role:<9} {state:<24} {row.created_at:%Y-%m-%d}  {row.label}")


@keys_app.command("revoke")
def keys_revoke(key_id: str, database_url: DbUrl = None) -> None:
    """Revoke an API key: it stops working on the next request."""
    from api._cli_errors import database_path

    path = database_path(_settings(database_url=database_url).database_url)
    if path is not None and not path.is_file():  # no key can be in it: do not make one
        raise _fail(
            f"没有该密钥 {key_id}：数据库 {path} 不存在",
            f"no key {key_id}: there is no database at {path}",
            "检查 --database-url 或 DATABASE_URL",
            "check --database-url or DATABASE_URL",
            exit_code=1,
        )
    if not _key_store(database_url).revoke(key_id):
        raise _fail(
            f"没有该密钥 {key_id}",
            f"no key {key_id}",
            "用 miaopi keys list 查看密钥编号",
            "miaopi keys list shows the key ids",
            exit_code=1,
        )
    typer.echo(f"已吊销 / revoked {key_id}")


@keys_app.command("signing-key")
def keys_signing_key(
    out: Path = typer.Option(..., "--out", help="where to write the new Ed25519 private key (PEM)"),
) -> None:
    """Make the log's Ed25519 signing key; prints its public key (give that to auditors)."""
    from api.secrets import generate_signing_key
    from explanations.log import public_key_pem

    if out.exists():
        raise _fail(
            f"文件已存在：{out}",
            f"{out} exists: not overwritten",
            "换一个 --out 文件名，或先移走原文件",
            "choose another --out file, or move the old one away",
        )
    typer.echo(public_key_pem(generate_signing_key(out)), nl=False)


@keys_app.command("public-key")
def keys_public_key(
    key_file: Path = typer.Argument(..., help="the signing key (PEM)"),
) -> None:
    """Print the public half of a signing key (PEM)."""
    from api.secrets import MissingSecrets, load_signing_key
    from explanations.log import public_key_pem

    try:
        typer.echo(public_key_pem(load_signing_key(key_file)), nl=False)
    except MissingSecrets as exc:
        zh, _, en = _one_line(exc).partition(" / ")
        raise _fail(
            zh,
            en,
            "须为 PEM 格式的 Ed25519 私钥（miaopi keys signing-key --out 文件 生成）",
            "a PEM Ed25519 private key (make one with miaopi keys signing-key --out FILE)",
        ) from None


@receipt_app.command("verify")
def receipt_verify(
    receipt_file: Path = typer.Argument(
        ..., help="a receipt (JSON), or a decision response holding one"
    ),
    public_key: PublicKeys = None,
    record: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--record", help="the record (JSON) the receipt is for: checked to hash to it"
    ),
) -> None:
    """Check offline that a record is in the log the service signed; exit 1 if not."""
    from explanations.log import Receipt, verify_receipt

    keys = _public_keys(public_key, _settings())
    if not keys:
        raise _fail(
            "需要公钥",
            "a public key is needed",
            "用 --public-key 文件 指定（服务的 /v1/log/public-key 提供）",
            "give it with --public-key FILE (the service serves it at /v1/log/public-key)",
        )
    try:
        data = json.loads(receipt_file.read_text(encoding="utf-8"))
        receipt = Receipt.model_validate(data.get("receipt", data) if "leaf" not in data else data)
        body = None
        if record is not None:
            body = json.loads(record.read_text(encoding="utf-8"))
            body = body.get("record", body)
    except (OSError, ValueError) as exc:
        typer.echo(f"无法读取回执 / cannot read the receipt: {exc}", err=True)
        raise typer.Exit(2) from None
    problems = verify_receipt(receipt, keys, record_body=body)
    for p in problems:
        typer.echo(f"INVALID: {p}")
    if problems:
        raise typer.Exit(1)
    cp = receipt.checkpoint
    typer.echo(
        f"回执有效 / receipt valid: decision {receipt.leaf.decision_id} is leaf {receipt.leaf_index} "
        f"of the log of {cp.size} signed at {cp.time} by key {cp.key_id}"
    )


@log_app.command("checkpoint")
def log_checkpoint(
    database_url: DbUrl = None,
    out: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--out", help="append the checkpoint to this file (JSON lines) as well"
    ),
) -> None:
    """Print the latest signed checkpoint (save it outside the database)."""
    from explanations import DecisionStore
    from explanations.log import append_checkpoint_file

    settings = _settings(database_url=database_url)
    _refuse_missing_sqlite(settings.database_url)
    store = DecisionStore(settings.database_url)
    try:
        head = store.checkpoint()
    finally:
        store.dispose()
    if head is None:
        typer.echo("日志为空 / the log is empty", err=True)
        raise typer.Exit(1)
    if out is not None:
        append_checkpoint_file(out, head)
    typer.echo(head.model_dump_json())


def main() -> None:
    """Run the CLI; an error is one line on stderr (exit 2: usage, 1: runtime), not a traceback.

    ``--debug`` (anywhere before the command) or ``MIAOPI_DEBUG=1`` shows the traceback.
    """
    import sys

    from api._cli_errors import explain

    debug = os.environ.get("MIAOPI_DEBUG", "") not in ("", "0") or "--debug" in sys.argv[1:]
    try:
        app()
    except Exception as exc:
        if debug:
            raise
        problem = explain(exc)
        typer.echo(problem.line(), err=True)
        raise SystemExit(problem.exit_code) from None


if __name__ == "__main__":  # pragma: no cover
    main()
