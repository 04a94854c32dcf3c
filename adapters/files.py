"""File-backed registries: any catalogued CSV or Parquet snapshot, indexed in memory by its key.

One class serves every registry the catalogue declares with ``kind: csv`` or ``kind: parquet``.
The file is read once, its header checked against the declared fields, and every cell
converted to its declared type; a file that is missing or has a malformed cell is refused
with a one-line error naming the file, the row and the column. An empty cell is a missing
value, never an empty string.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from adapters.base import (
    Adapter,
    AdapterFailure,
    ClaimValues,
    FactValue,
    Lookup,
    LookupMode,
    Provenance,
    raw_hash,
)
from engine.registries import RegistryCatalogue, RegistrySpec, convert_text, parse_claim

__all__ = [
    "FileRegistry",
    "LoadedRegistries",
    "RegistryFileError",
    "load_registries",
    "load_registry",
]

_BAD_DATA = "ADAPTER_BAD_DATA"
_VERSION = "files-2"
_TYPE_ZH = {
    "string": "字符串",
    "integer": "整数",
    "number": "数字",
    "boolean": "布尔值",
    "date": "日期（YYYY-MM-DD）",
}

RawRow = dict[str, str]
MISSING_KEY = object()
_EXACT: dict[str, type] = {"string": str, "integer": int, "date": dt.date, "boolean": bool}
"""Python types that need no conversion to be compared with a registry field's values."""


class RegistryFileError(Exception):
    """Raised at load time when a registry's data file is missing, unreadable or malformed.

    ``row`` is the line number in a CSV file (the header is line 1) or the record number in a
    Parquet file; ``column`` the offending column. ``str()`` is one line.
    """

    def __init__(
        self,
        *,
        path: Path,
        problem: str,
        row: int | None = None,
        column: str | None = None,
        missing_columns: Sequence[str] = (),
    ) -> None:
        self.path = path
        self.problem = problem
        self.row = row
        self.column = column
        self.missing_columns = tuple(missing_columns)
        where = str(path)
        if row is not None:
            where += f":{row}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    raw: RawRow
    typed: dict[str, FactValue]


def _text(v: object) -> str:
    """A key or claim value as the text a registry cell would hold."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return format(v, "f")
    return str(v)


@dataclass
class FileRegistry:
    """One catalogued registry served from a snapshot file held in memory."""

    spec: RegistrySpec
    rows: list[_Row]
    origin: str = "<memory>"
    in_memory: bool = True
    """Answers from memory without blocking: the gatherer calls it inline, no time box."""
    version: str = _VERSION
    _index: dict[tuple[object, ...], list[_Row]] = field(default_factory=dict, repr=False)
    _answers: dict[str, dict[str, object] | None] = field(default_factory=dict, repr=False)
    _types: dict[str, str] = field(default_factory=dict, repr=False)
    _key_types: list[tuple[str, str]] = field(default_factory=list, repr=False)

    source: str = ""
    """The catalogue id (set from the spec)."""

    def __post_init__(self) -> None:
        self.source = self.spec.id
        self._types = self.spec.field_types
        self._key_types = [(k, self._types[k]) for k in self.spec.key]
        for row in self.rows:
            self._index.setdefault(self._row_key(row), []).append(row)
        types = self.spec.field_types
        for name, text in self.spec.answers.items():
            claim = parse_claim(text, fields=types)
            self._answers[name] = self._typed_claim(
                {f: getattr(node, "value", None) for f, node in claim.equals}
            )

    @property
    def fields(self) -> Mapping[str, str]:
        """The fields this registry can answer, with their type names."""
        return self.spec.field_types

    def __len__(self) -> int:
        return len(self.rows)

    def supports(self, mode: LookupMode) -> bool:
        return mode in self.spec.modes

    @classmethod
    def from_rows(
        cls, spec: RegistrySpec, rows: Sequence[Mapping[str, str]], *, origin: str = "<memory>"
    ) -> FileRegistry:
        """A registry from rows of text cells (as read from a file), converted and checked."""
        return cls(spec, _convert(spec, rows, origin=Path(origin), first_line=2), origin)

    def _row_key(self, row: _Row) -> tuple[object, ...]:
        return tuple(row.typed.get(k) for k in self.spec.key)

    def _wanted_key(self, key: Mapping[str, object]) -> tuple[object, ...] | None:
        out: list[object] = []
        if len(key) == len(self._key_types):
            for k, type_name in self._key_types:
                v = key.get(k, MISSING_KEY)
                if v is MISSING_KEY:
                    break
                if _EXACT.get(type_name) is type(v):
                    out.append(v)  # already the registry's type (the usual case)
                    continue
                try:
                    out.append(convert_text(_text(v), type_name))
                except ValueError:
                    return None  # a key that cannot exist in the registry
            else:
                return tuple(out)
        missing = [k for k in self.spec.key if k not in key]
        unknown = [k for k in key if k not in self.spec.key]
        raise ValueError(
            f"登记库 {self.source} 的键为 {', '.join(self.spec.key)} / registry {self.source} "
            f"is keyed by {', '.join(self.spec.key)}; missing {missing}, unexpected {unknown}"
        )

    def _provenance(self, rows: Sequence[_Row], *, now: dt.datetime) -> Provenance:
        rid = self.spec.record_id
        refs = [r.raw.get(rid, "") if rid else f"row {r.line}" for r in rows]
        return Provenance(
            source=self.source,
            adapter=f"files.{self.spec.kind}",
            adapter_version=self.version,
            reference=",".join(refs) or None,
            retrieved_at=now,
            raw_sha256=raw_hash([r.raw for r in rows]) if rows else None,
        )

    def lookup(
        self,
        key: Mapping[str, object],
        *,
        fields: Sequence[str],
        mode: LookupMode,
        claims: Mapping[str, ClaimValues | None] | None = None,
        now: dt.datetime,
    ) -> Lookup:
        """Fetch fields of the record under ``key``, or verify claims about its records.

        Raises ``ValueError`` for a mode, field, key or named answer the registry does not
        have, and ``AdapterFailure`` (``ADAPTER_BAD_DATA``) when a fetch key matches more than
        one record.
        """
        if not self.supports(mode):
            raise ValueError(
                f"登记库 {self.source} 不支持 {mode} 方式 / registry {self.source} does not support "
                f"mode {mode!r}; supported: {', '.join(self.spec.modes)}"
            )
        wanted = self._wanted_key(key)
        rows = self._index.get(wanted, []) if wanted is not None else []
        if mode == "verify":
            return self._verify(rows, fields=fields, claims=claims or {}, now=now)
        unknown = [f for f in fields if f not in self.spec.fields]
        if unknown:
            raise ValueError(
                f"登记库 {self.source} 没有字段 {', '.join(unknown)} / registry {self.source} has "
                f"no field(s) {', '.join(repr(f) for f in unknown)}; available: "
                f"{', '.join(self.spec.fields)}"
            )
        if not rows:
            return Lookup(
                status="not_found", mode=mode, values={}, provenance=self._provenance([], now=now)
            )
        if len(rows) > 1:
            lines = ", ".join(str(r.line) for r in rows)
            raise AdapterFailure(
                code=_BAD_DATA,
                message=f"{self.origin} 第{lines}行的键重复 / rows {lines} share the key "
                f"({', '.join(self.spec.key)}); the record is ambiguous",
            )
        row = rows[0]
        return Lookup(
            status="found",
            mode=mode,
            values={f: row.typed.get(f) for f in fields},
            provenance=self._provenance(rows, now=now),
        )

    def _verify(
        self,
        rows: Sequence[_Row],
        *,
        fields: Sequence[str],
        claims: Mapping[str, ClaimValues | None],
        now: dt.datetime,
    ) -> Lookup:
        answers: dict[str, FactValue] = {}
        for name in fields:
            claim = claims.get(name)
            if claim is None:
                if name not in self._answers:
                    raise ValueError(
                        f"登记库 {self.source} 没有名为 {name} 的核验答案 / registry {self.source} "
                        f"has no named answer {name!r}; answers: {', '.join(self._answers)}"
                    )
                claim = self._answers[name]
            else:
                claim = self._typed_claim(claim)
            if claim is None:  # a claimed value the registry's field can never hold
                answers[name] = False
                continue
            answers[name] = any(
                all(row.typed.get(f) == want for f, want in claim.items()) for row in rows
            )
        if not rows and self.spec.no_record == "unknown":
            return Lookup(
                status="not_found",
                mode="verify",
                values={},
                provenance=self._provenance([], now=now),
            )
        return Lookup(
            status="found",
            mode="verify",
            values=answers,
            provenance=self._provenance(rows, now=now),
        )

    def _typed_claim(self, claim: ClaimValues) -> dict[str, object] | None:
        """The claimed values in the registry's field types, or ``None`` if one cannot be."""
        out: dict[str, object] = {}
        for f, claimed in claim.items():
            type_name = self.spec.field_types.get(f)
            if type_name is None:
                raise ValueError(f"registry {self.source} has no field {f!r}")
            try:
                out[f] = (
                    claimed
                    if _EXACT.get(type_name) is type(claimed)
                    else convert_text(_text(claimed), type_name)
                )
            except ValueError:
                return None
        return out


def _convert(
    spec: RegistrySpec, rows: Iterable[Mapping[str, str]], *, origin: Path, first_line: int
) -> list[_Row]:
    """Typed rows; the first malformed cell raises ``RegistryFileError`` naming row and column."""
    types = spec.field_types
    out: list[_Row] = []
    for n, raw in enumerate(rows):
        line = first_line + n
        typed: dict[str, FactValue] = {}
        for column, type_name in types.items():
            cell = raw.get(column, "")
            if cell is None or cell.strip() == "":
                continue
            try:
                typed[column] = convert_text(cell, type_name)  # type: ignore[assignment]
            except ValueError:
                raise RegistryFileError(
                    path=origin,
                    row=line,
                    column=column,
                    problem=f"第{line}行 {column} 列不是有效的{_TYPE_ZH[type_name]}：{cell!r} / "
                    f"row {line}, column {column}: not a valid {type_name}: {cell!r}",
                ) from None
        out.append(_Row(line, dict(raw), typed))
    return out


def _required_columns(spec: RegistrySpec) -> list[str]:
    cols = list(spec.fields)
    if spec.record_id and spec.record_id not in cols:
        cols.insert(0, spec.record_id)
    return cols


def _read_csv(path: Path, spec: RegistrySpec) -> list[RawRow]:
    import pandas as pd  # heavy: imported only when a registry is loaded

    columns = _required_columns(spec)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise RegistryFileError(
            path=path,
            problem=f"文件为空，缺少表头 / the file is empty; expected a header row with "
            f"{', '.join(columns)}",
            missing_columns=columns,
        ) from None
    except UnicodeDecodeError as exc:
        raise RegistryFileError(
            path=path, problem=f"文件不是UTF-8编码 / not UTF-8 (byte {exc.start})"
        ) from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "parse error"
        raise RegistryFileError(
            path=path, problem=f"无法解析CSV / cannot parse the CSV file: {detail}"
        ) from None
    _check_columns(path, [str(c) for c in frame.columns], columns, header_row=1)
    return [{str(k): str(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _check_columns(
    path: Path, present: Sequence[str], required: Sequence[str], *, header_row: int | None
) -> None:
    """Refuse a file that lacks a declared column, naming the columns it has."""
    missing = [c for c in required if c not in present]
    if missing:
        raise RegistryFileError(
            path=path,
            row=header_row,
            problem=f"表头缺少列 / the header lacks column(s): {', '.join(missing)} "
            f"(found: {', '.join(present) or 'none'})",
            missing_columns=missing,
        )


def _read_parquet(path: Path, spec: RegistrySpec) -> list[RawRow]:
    import pandas as pd

    columns = _required_columns(spec)
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many kinds for a damaged file
        first = (str(exc).strip().splitlines() or ["unreadable"])[0][:200]
        raise RegistryFileError(
            path=path, problem=f"无法读取Parquet文件 / cannot read the Parquet file: {first}"
        ) from None
    _check_columns(path, [str(c) for c in frame.columns], columns, header_row=None)
    out: list[RawRow] = []
    for record in frame.to_dict(orient="records"):
        out.append({str(k): _cell_text(v) for k, v in record.items()})
    return out


def _cell_text(v: object) -> str:
    """A Parquet cell as registry text: dates ISO, numbers in their shortest decimal form."""
    import pandas as pd

    if v is None or (not isinstance(v, str | bytes | list) and bool(pd.isna(v))):
        return ""
    if isinstance(v, pd.Timestamp | dt.datetime):
        return v.date().isoformat()
    return _text(v)


def load_registry(spec: RegistrySpec, data_dir: Path) -> FileRegistry:
    """Load one catalogued file registry from ``data_dir``; raise ``RegistryFileError``."""
    path = Path(spec.location)
    if not path.is_absolute():
        path = data_dir / path
    if not path.is_file():
        raise RegistryFileError(
            path=path,
            problem=f"找不到登记库 {spec.id}（{spec.name.zh}）的数据文件 / data file of registry "
            f"{spec.id} not found",
        )
    if spec.kind == "csv":
        raw = _read_csv(path, spec)
        first = 2
    else:
        raw = _read_parquet(path, spec)
        first = 1
    return FileRegistry(spec, _convert(spec, raw, origin=path, first_line=first), str(path))


@dataclass(frozen=True)
class LoadedRegistries:
    """The registries that loaded, and a one-line problem for each that did not."""

    adapters: dict[str, Adapter]
    problems: dict[str, str]
    counts: dict[str, int]


def load_registries(catalogue: RegistryCatalogue, data_dir: Path) -> LoadedRegistries:
    """Load every registry of the catalogue; one that cannot load is reported, not fatal."""
    adapters: dict[str, Adapter] = {}
    problems: dict[str, str] = {}
    counts: dict[str, int] = {}
    for spec in catalogue:
        try:
            registry = load_registry(spec, data_dir)
        except RegistryFileError as exc:
            problems[spec.id] = str(exc)
            continue
        adapters[spec.id] = registry
        counts[spec.id] = len(registry)
    return LoadedRegistries(adapters, problems, counts)


def describe(loaded: LoadedRegistries) -> str:  # pragma: no cover - used interactively
    return json.dumps({"loaded": loaded.counts, "problems": loaded.problems}, ensure_ascii=False)
