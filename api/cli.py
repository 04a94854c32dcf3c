"""The ``miaopi`` console script: serve, decide, ruleset validate/test, audit verify, demo data."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="秒批 instant-approval decision engine"
)
ruleset_app = typer.Typer(no_args_is_help=True, help="规则集 validate and test rulesets")
audit_app = typer.Typer(no_args_is_help=True, help="审计 verify the explanation record chain")
demo_app = typer.Typer(
    no_args_is_help=True, help="演示数据 demo registries and sample applications"
)
app.add_typer(ruleset_app, name="ruleset")
app.add_typer(audit_app, name="audit")
app.add_typer(demo_app, name="demo")

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="registry CSV folder [env MIAOPI_DATA_DIR]")
]
Rulesets = Annotated[
    Path | None, typer.Option("--rulesets", help="rulesets folder [env MIAOPI_RULESETS_DIR]")
]
DbUrl = Annotated[Optional[str], typer.Option("--database-url", help="[env DATABASE_URL]")]  # noqa: UP045


def _settings(
    data_dir: Path | None = None, rulesets: Path | None = None, database_url: str | None = None
) -> object:
    from api.settings import Settings

    return Settings.from_env(data_dir=data_dir, rulesets_dir=rulesets, database_url=database_url)


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = typer.Option(1, help="processes; durable_rules runs on one thread per process"),
    data_dir: DataDir = None,
    rulesets: Rulesets = None,
    database_url: DbUrl = None,
    demo: bool = typer.Option(
        False, "--demo", help="generate the demo registries first if the data folder is empty"
    ),
) -> None:
    """Run the HTTP service (uvicorn)."""
    import uvicorn

    from api.settings import Settings

    settings = Settings.from_env(
        data_dir=data_dir, rulesets_dir=rulesets, database_url=database_url
    )
    if demo and not (settings.data_dir / "population.csv").exists():
        from adapters.demo import generate_demo_data

        typer.echo(f"生成演示数据 / generating demo registries in {settings.data_dir} …", err=True)
        generate_demo_data(settings.data_dir)
    os.environ["MIAOPI_DATA_DIR"] = str(settings.data_dir)
    os.environ["MIAOPI_RULESETS_DIR"] = str(settings.rulesets_dir)
    os.environ["DATABASE_URL"] = settings.database_url
    uvicorn.run(
        "api.main:app", host=host, port=port, workers=workers, log_level="warning", access_log=False
    )


@app.command()
def decide(
    file: Path,
    data_dir: DataDir = None,
    rulesets: Rulesets = None,
    text: bool = typer.Option(True, help="print the plain-language explanation too"),
) -> None:
    """Decide one application JSON file without storing it (a dry run)."""
    import pydantic

    from adapters.files import load_file_registries
    from api.service import DecisionRequest, DecisionService, RequestRejected
    from api.settings import Settings
    from engine import RulesetCatalog
    from explanations import render_text

    settings = Settings.from_env(data_dir=data_dir, rulesets_dir=rulesets)
    try:
        body = json.loads(file.read_text(encoding="utf-8"))
        request = DecisionRequest.model_validate(body)
    except (OSError, ValueError, pydantic.ValidationError) as exc:
        typer.echo(f"无法读取申请 / cannot read the application {file}: {exc}", err=True)
        raise typer.Exit(2) from None
    service = DecisionService(
        catalog=RulesetCatalog.load(settings.rulesets_dir),
        adapters=load_file_registries(settings.data_dir),
        store=None,
        pseudonym_key=settings.pseudonym_key,
    )
    try:
        response, record = service.decide_unstored(request)
    except RequestRejected as exc:
        typer.echo(f"{exc.message_zh} / {exc.message_en} {exc.fields or ''}", err=True)
        raise typer.Exit(2) from None
    finally:
        service.close()
    typer.echo(json.dumps(response, ensure_ascii=False, indent=2))
    if text:
        typer.echo("\n" + render_text(record, lang="zh"))


@ruleset_app.command("validate")
def ruleset_validate(path: Path) -> None:
    """Check a ruleset file, or every ruleset in a folder; errors name file:line:column."""
    from engine import RulesetCatalog, RulesetInvalid, load_ruleset

    try:
        if path.is_dir():
            catalog = RulesetCatalog.load(path)
            loaded = list(catalog)
        else:
            loaded = [load_ruleset(path)]
    except RulesetInvalid as exc:
        for err in exc.errors:
            typer.echo(str(err), err=True)
        typer.echo(f"{len(exc.errors)} 个错误 / error(s)", err=True)
        raise typer.Exit(1) from None
    for rs in loaded:
        typer.echo(f"OK {rs.key} {rs.doc.status} {rs.content_hash} ({len(rs.criteria)} criteria)")


@ruleset_app.command("test")
def ruleset_test(path: Path) -> None:
    """Run the named examples of a ruleset file (or all in a folder) on both evaluators."""
    from engine import RulesetCatalog, RulesetInvalid, load_ruleset
    from engine.examples import run_examples

    try:
        rulesets = list(RulesetCatalog.load(path)) if path.is_dir() else [load_ruleset(path)]
    except RulesetInvalid as exc:
        for err in exc.errors:
            typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    passed = failed = 0
    for rs in rulesets:
        for result in run_examples(rs):
            mark = "PASS" if result.ok else "FAIL"
            typer.echo(f"{mark} {rs.key}: {result.name}")
            for problem in result.problems:
                typer.echo(f"     {problem}")
            passed += result.ok
            failed += not result.ok
    typer.echo(f"{passed} passed, {failed} failed")
    if failed or not passed:
        raise typer.Exit(1)


@audit_app.command("verify")
def audit_verify(database_url: DbUrl = None) -> None:
    """Re-hash every stored record and walk the chain; exit 1 naming each altered record."""
    from api.settings import Settings
    from explanations import DecisionStore

    settings = Settings.from_env(database_url=database_url)
    store = DecisionStore(settings.database_url)
    try:
        count, problems = store.verify(
            progress=lambda n: typer.echo(f"… {n} records checked", err=True)
        )
    finally:
        store.dispose()
    for p in problems:
        typer.echo(f"TAMPERED seq={p.seq} decision={p.decision_id}: {p.message}")
    if problems:
        typer.echo(f"校验失败 / verification FAILED: {len(problems)} problem(s) in {count} records")
        raise typer.Exit(1)
    typer.echo(f"校验通过 / verified: {count} records, chain intact")


@audit_app.command("replay")
def audit_replay(
    decision_id: Annotated[
        str | None, typer.Argument(help="one decision; all when omitted")
    ] = None,
    rulesets: Rulesets = None,
    database_url: DbUrl = None,
) -> None:
    """Re-decide stored records from their recorded ruleset version and evidence; exit 1 on any difference."""
    from api.settings import Settings
    from engine import RulesetCatalog
    from explanations import DecisionStore, ExplanationRecordV1, replay

    settings = Settings.from_env(rulesets_dir=rulesets, database_url=database_url)
    catalog = RulesetCatalog.load(settings.rulesets_dir)
    store = DecisionStore(settings.database_url)
    checked = differing = 0
    try:
        if decision_id is not None:
            record = store.get_record(decision_id)
            if record is None:
                typer.echo(f"未找到该决定 / no decision {decision_id}", err=True)
                raise typer.Exit(2)
            records: Iterable[ExplanationRecordV1] = [record]
        else:
            records = (
                ExplanationRecordV1.model_validate(
                    {**json.loads(r.record_json), "record_hash": r.record_hash}
                )
                for r in store.iter_records()
            )
        for record in records:
            checked += 1
            if checked % 1000 == 0:
                typer.echo(f"… {checked} records replayed", err=True)
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


@audit_app.command("schema")
def audit_schema() -> None:
    """Print the JSON Schema of the explanation record (generated from the pydantic model)."""
    from explanations import ExplanationRecordV1

    typer.echo(json.dumps(ExplanationRecordV1.model_json_schema(), ensure_ascii=False, indent=2))


@demo_app.command("generate")
def demo_generate(
    out: Path = typer.Option(Path("var/demo"), "--out", help="folder to write"),
    people: int = 10_000,
    seed: int = 20161,
) -> None:
    """Write the deterministic demo registries and sample applications."""
    from adapters.demo import generate_demo_data

    summary = generate_demo_data(out, people=people, seed=seed)
    typer.echo(summary.model_dump_json(indent=2))


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
