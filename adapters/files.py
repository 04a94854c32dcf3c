"""File-backed registries: any catalogued CSV or Parquet snapshot, indexed in memory by its key.

One class serves every registry the catalogue declares with ``kind: csv`` or ``kind: parquet``.
The file is read once, its header checked against the declared fields (every one present,
none twice, every record as wide as the header), string cells normalised (trimmed, Unicode
NFKC) unless the catalogue says otherwise, and every cell converted to its declared type and
checked against its declared vocabulary or pattern. A file that is missing or has a malformed
cell is refused with a one-line error naming the file, the row and the column. An empty cell
is a missing value, never an empty string.

A snapshot cannot silently lie about itself: its manifest (``<file>.meta.json``: ``as_of``,
``rows``, ``sha256``, ``holder``) must match the file byte for byte and row for row, and is
required where "no record" means a verified "no" (an empty or failed export would otherwise
answer "no" for everyone). A snapshot older than the catalogue's ``max_age_days`` answers
every lookup with the error ``STALE_SNAPSHOT``, so the criteria needing it are referred.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from adapters.base import (
    Adapter,
    AdapterFailure,
    ClaimValues,
    FactValue,
    Lookup,
    LookupMode,
    Provenance,
    canonical_rows,
)
from engine.registries import (
    RegistryCatalogue,
    RegistrySpec,
    convert_text,
    normalize_text,
    parse_claim,
)

__all__ = [
    "STALE_SNAPSHOT",
    "FileRegistry",
    "LoadedRegistries",
    "RegistryFileError",
    "Snapshot",
    "SnapshotManifest",
    "load_registries",
    "load_registry",
    "manifest_path",
    "write_manifest",
]

_BAD_DATA = "ADAPTER_BAD_DATA"
STALE_SNAPSHOT = "STALE_SNAPSHOT"
"""The lookup error of a registry whose snapshot is older than its ``max_age_days``."""
MANIFEST_SUFFIX = ".meta.json"
_SHANGHAI = ZoneInfo("Asia/Shanghai")
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


class SnapshotManifest(BaseModel):
    """What the exporter says about a snapshot file: ``<file>.meta.json`` beside it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: dt.date
    """The day the export was taken (the data is as of this day)."""
    rows: int = Field(ge=0)
    """Data records in the file (the header not counted)."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the file's bytes, lower-case hex."""
    holder: str | None = None
    """The agency that exported it; when given, the catalogue's ``holder`` (zh or en)."""


@dataclass(frozen=True)
class Snapshot:
    """What is known about the file a registry was loaded from (shown beside its health)."""

    path: str
    sha256: str
    rows: int
    manifest: str | None
    """The manifest that vouched for the file, or ``None`` when there was none."""
    as_of: dt.date | None
    holder: str | None
    note: str | None = None
    """What could not be checked (no manifest), in one line; ``None`` when all was."""


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    raw: RawRow
    typed: dict[str, FactValue]
    canonical: str | None = field(default=None, compare=False)
    """The raw row's canonical JSON, made on its first lookup (rows never change)."""

    digest: str | None = field(default=None, compare=False)
    """SHA-256 of ``[<this row>]``: the provenance of a lookup that found this row alone."""

    def canonical_json(self) -> str:
        if self.canonical is None:  # a cache, so the frozen row may be written once
            object.__setattr__(self, "canonical", canonical_rows([self.raw])[1:-1])
        assert self.canonical is not None
        return self.canonical

    def alone_sha256(self) -> str:
        if self.digest is None:  # computed on the row's first lookup, once (rows never change)
            text = "[" + self.canonical_json() + "]"
            object.__setattr__(self, "digest", hashlib.sha256(text.encode("utf-8")).hexdigest())
        assert self.digest is not None
        return self.digest


def _rows_sha256(rows: Sequence[_Row]) -> str | None:
    """SHA-256 of the canonical JSON of the rows an answer came from (None for no row)."""
    if not rows:
        return None
    if len(rows) == 1:
        return rows[0].alone_sha256()  # hashed once per row
    text = "[" + ",".join(r.canonical_json() for r in rows) + "]"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    snapshot: Snapshot | None = None
    """The file it was loaded from and its manifest; ``None`` for rows given in memory."""
    _index: dict[tuple[object, ...], list[_Row]] = field(default_factory=dict, repr=False)
    _answers: dict[str, dict[str, object] | None] = field(default_factory=dict, repr=False)
    _types: dict[str, str] = field(default_factory=dict, repr=False)
    _key_types: list[tuple[str, str]] = field(default_factory=list, repr=False)
    _normalized: frozenset[str] = field(default_factory=frozenset, repr=False)
    """The string fields whose cells, keys and claims are normalised."""

    source: str = ""
    """The catalogue id (set from the spec)."""

    def __post_init__(self) -> None:
        self.source = self.spec.id
        self._types = self.spec.field_types
        self._key_types = [(k, self._types[k]) for k in self.spec.key]
        self._normalized = frozenset(
            n for n, t in self._types.items() if t == "string" and self.spec.normalizes(n)
        )
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
        return cls(spec, _convert(spec, enumerate(rows, start=2), origin=Path(origin)), origin)

    def _row_key(self, row: _Row) -> tuple[object, ...]:
        return tuple(row.typed.get(k) for k in self.spec.key)

    def _wanted_key(self, key: Mapping[str, object]) -> tuple[object, ...] | None:
        out: list[object] = []
        if len(key) == len(self._key_types):
            for k, type_name in self._key_types:
                v = key.get(k, MISSING_KEY)
                if v is MISSING_KEY:
                    break
                if _EXACT.get(type_name) is not type(v):
                    try:
                        v = convert_text(_text(v), type_name)
                    except ValueError:
                        return None  # a key that cannot exist in the registry
                if isinstance(v, str) and k in self._normalized:
                    v = normalize_text(v)  # as the registry's cells were
                out.append(v)
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
            raw_sha256=_rows_sha256(rows),
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
        stale = self._stale(now)
        if stale is not None:
            return Lookup(
                status="error",
                mode=mode,
                values={},
                provenance=self._provenance([], now=now),
                error_code=STALE_SNAPSHOT,
                error_message=stale,
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

    def _stale(self, now: dt.datetime) -> str | None:
        """Why the snapshot is too old to answer on ``now``'s day, or ``None``."""
        limit = self.spec.max_age_days
        if limit is None:
            return None
        as_of = self.snapshot.as_of if self.snapshot is not None else None
        if as_of is None:
            return (
                f"登记库 {self.source} 的快照日期未知，无法确认时效 / registry {self.source}: the "
                f"snapshot's date is unknown, so its age (at most {limit} days) cannot be checked"
            )
        today = (now.astimezone(_SHANGHAI) if now.tzinfo is not None else now).date()
        age = (today - as_of).days
        if age < 0:  # a wrong manifest or a wrong clock: its age cannot be trusted either way
            return (
                f"登记库 {self.source} 的快照日期 {as_of.isoformat()} 晚于今天 {today.isoformat()} / "
                f"registry {self.source}: the snapshot claims to be as of {as_of.isoformat()}, "
                f"after today ({today.isoformat()})"
            )
        if age <= limit:
            return None
        return (
            f"登记库 {self.source} 的快照为 {as_of.isoformat()} 导出，已 {age} 天，超过 {limit} 天的"
            f"时效 / registry {self.source}: the snapshot is as of {as_of.isoformat()}, {age} days "
            f"old; the catalogue allows {limit}"
        )

    def _typed_claim(self, claim: ClaimValues) -> dict[str, object] | None:
        """The claimed values in the registry's field types, or ``None`` if one cannot be."""
        out: dict[str, object] = {}
        for f, claimed in claim.items():
            type_name = self.spec.field_types.get(f)
            if type_name is None:
                raise ValueError(f"registry {self.source} has no field {f!r}")
            try:
                value = (
                    claimed
                    if _EXACT.get(type_name) is type(claimed)
                    else convert_text(_text(claimed), type_name)
                )
            except ValueError:
                return None
            out[f] = (
                normalize_text(value) if isinstance(value, str) and f in self._normalized else value
            )
        return out


class _CellProblem(Exception):
    """A cell is not its column's type, pattern or vocabulary (``kind`` says which)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True)
class _Column:
    """How one declared field's cells are read: normalised, converted, checked."""

    name: str
    type: str
    normalize: bool
    values: frozenset[str] | None
    pattern: re.Pattern[str] | None
    declared: tuple[str, ...] = ()
    """The vocabulary in the catalogue's order (for messages)."""

    @classmethod
    def of(cls, spec: RegistrySpec, name: str) -> _Column:
        declared = spec.field_spec(name)
        assert declared is not None
        return cls(
            name,
            declared.type,
            declared.type == "string" and spec.normalizes(name),
            frozenset(declared.values) if declared.values is not None else None,
            re.compile(declared.pattern) if declared.pattern is not None else None,
            tuple(declared.values or ()),
        )

    def clean(self, cell: str) -> str:
        """The text that is checked: normalised, or as written (other types: unpadded)."""
        if self.normalize:
            return normalize_text(cell)
        return cell if self.type == "string" else cell.strip()

    def read(self, text: str) -> FactValue:
        """The typed value of cleaned ``text``; raise ``_CellProblem``."""
        try:
            value: FactValue = convert_text(text, self.type)  # type: ignore[assignment]
        except ValueError:
            raise _CellProblem("type") from None
        if self.pattern is not None and not self.pattern.fullmatch(text):
            raise _CellProblem("pattern")
        if self.values is not None and value not in self.values:
            raise _CellProblem("values")
        return value

    def accepts(self, cell: str) -> bool:
        try:
            self.read(self.clean(cell))
        except _CellProblem:
            return False
        return True


def _convert(
    spec: RegistrySpec, rows: Iterable[tuple[int, Mapping[str, str]]], *, origin: Path
) -> list[_Row]:
    """Typed rows from ``(line, cells)``; the first bad cell raises ``RegistryFileError``."""
    columns = [_Column.of(spec, name) for name in spec.fields]
    out: list[_Row] = []
    for line, raw in rows:
        typed: dict[str, FactValue] = {}
        for column in columns:
            cell = raw.get(column.name, "")
            if not cell:
                continue
            text = column.clean(cell)
            if not text.strip():
                continue
            try:
                typed[column.name] = column.read(text)
            except _CellProblem as exc:
                raise _cell_error(origin, line, column, cell, exc.kind, raw, columns) from None
        out.append(_Row(line, dict(raw), typed))
    return out


def _cell_error(
    origin: Path,
    line: int,
    column: _Column,
    cell: str,
    kind: str,
    raw: Mapping[str, str],
    columns: Sequence[_Column],
) -> RegistryFileError:
    """One line naming file, row, column, the cell and what was declared."""
    name = column.name
    if kind == "type":
        zh = f"第{line}行 {name} 列不是有效的{_TYPE_ZH[column.type]}：{cell!r}"
        en = f"row {line}, column {name}: not a valid {column.type}: {cell!r}"
    elif kind == "pattern":
        shape = column.pattern.pattern if column.pattern is not None else ""
        zh = f"第{line}行 {name} 列不符合目录声明的格式 {shape}：{cell!r}"
        en = f"row {line}, column {name}: {cell!r} does not match the declared pattern {shape}"
    else:
        declared = column.declared
        shown = ", ".join(declared[:8]) + (
            f", … {len(declared)} in all" if len(declared) > 8 else ""
        )
        zh = f"第{line}行 {name} 列的值不在目录声明的取值中：{cell!r}"
        en = f"row {line}, column {name}: {cell!r} is not one of the declared values ({shown})"
    other, mutual = _swapped_with(column, cell, raw, columns)
    if other is not None and mutual:
        zh += f"（{name} 与 {other} 两列像是互换了，请检查表头）"
        en += f"; columns {name} and {other} look swapped (check the header)"
    elif other is not None:
        zh += f"（此值符合 {other} 列，表头是否互换了？）"
        en += f"; the value fits column {other}: is the header swapped?"
    return RegistryFileError(path=origin, row=line, column=name, problem=f"{zh} / {en}")


def _swapped_with(
    column: _Column, cell: str, raw: Mapping[str, str], columns: Sequence[_Column]
) -> tuple[str | None, bool]:
    """A column the bad ``cell`` belongs to: one whose own cell fits ``column`` in turn
    (``mutual``), else a checked one (vocabulary, pattern or non-string type) it fits."""
    fits: str | None = None
    for other in columns:
        if other is column or not other.accepts(cell):
            continue
        theirs = raw.get(other.name) or ""
        if theirs.strip() and column.accepts(theirs):
            return other.name, True
        checked = other.values is not None or other.pattern is not None or other.type != "string"
        if fits is None and checked:
            fits = other.name
    return fits, False


def _required_columns(spec: RegistrySpec) -> list[str]:
    cols = list(spec.fields)
    if spec.record_id and spec.record_id not in cols:
        cols.insert(0, spec.record_id)
    return cols


Records = list[tuple[int, list[str]]]


def _csv_records(data: bytes, path: Path) -> tuple[int, list[str] | None, Records]:
    """The header's line, the header and every data record with the line it starts on.

    Blank lines are skipped (and not counted); quoting must be well formed.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RegistryFileError(
            path=path, problem=f"文件不是UTF-8编码 / not UTF-8 (byte {exc.start})"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    header_line = 1
    records: Records = []
    start = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not cells:
                continue
            if header is None:
                header, header_line = cells, line
            else:
                records.append((line, cells))
    except csv.Error as exc:
        raise RegistryFileError(
            path=path,
            row=reader.line_num,
            problem=f"无法解析CSV / cannot parse the CSV file: {exc}",
        ) from None
    return header_line, header, records


def _read_csv(data: bytes, path: Path, spec: RegistrySpec) -> list[tuple[int, RawRow]]:
    """Rows of text cells by line; refuse a file whose records are not as wide as its header."""
    columns = _required_columns(spec)
    header_line, header, records = _csv_records(data, path)
    if header is None:
        raise RegistryFileError(
            path=path,
            problem=f"文件为空，缺少表头 / the file is empty; expected a header row with "
            f"{', '.join(columns)}",
            missing_columns=columns,
        )
    _check_columns(path, header, columns, header_row=header_line)
    width = len(header)
    out: list[tuple[int, RawRow]] = []
    for line, cells in records:
        if len(cells) != width:
            more = len(cells) > width
            raise RegistryFileError(
                path=path,
                row=line,
                problem=(
                    f"第{line}行有{len(cells)}个值，表头只有{width}列 / row {line} has "
                    f"{len(cells)} cells, the header {width} columns"
                    if more
                    else f"第{line}行只有{len(cells)}个值，表头有{width}列（行被截断？）/ row "
                    f"{line} has {len(cells)} cells, the header {width} columns (a cut-off line?)"
                ),
            )
        out.append((line, dict(zip(header, cells, strict=True))))
    return out


def _check_columns(
    path: Path, present: Sequence[str], required: Sequence[str], *, header_row: int | None
) -> None:
    """Refuse a header that lacks a declared column or names a column twice."""
    missing = [c for c in required if c not in present]
    if missing:
        raise RegistryFileError(
            path=path,
            row=header_row,
            problem=f"表头缺少列 / the header lacks column(s): {', '.join(missing)} "
            f"(found: {', '.join(present) or 'none'})",
            missing_columns=missing,
        )
    twice = sorted({c for c in present if c and present.count(c) > 1})
    if twice:
        raise RegistryFileError(
            path=path,
            row=header_row,
            column=twice[0],
            problem=f"表头中的列重复：{', '.join(twice)} / the header names column(s) twice: "
            f"{', '.join(twice)}",
        )


def _parquet_frame(data: bytes, path: Path) -> object:
    import pandas as pd  # heavy: imported only when a registry is loaded

    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises many kinds for a damaged file
        first = (str(exc).strip().splitlines() or ["unreadable"])[0][:200]
        raise RegistryFileError(
            path=path, problem=f"无法读取Parquet文件 / cannot read the Parquet file: {first}"
        ) from None


def _read_parquet(data: bytes, path: Path, spec: RegistrySpec) -> list[tuple[int, RawRow]]:
    import pandas as pd

    frame = _parquet_frame(data, path)
    assert isinstance(frame, pd.DataFrame)
    _check_columns(path, [str(c) for c in frame.columns], _required_columns(spec), header_row=None)
    return [
        (n, {str(k): _cell_text(v) for k, v in record.items()})
        for n, record in enumerate(frame.to_dict(orient="records"), start=1)
    ]


def _cell_text(v: object) -> str:
    """A Parquet cell as registry text: dates ISO, numbers in their shortest decimal form."""
    import pandas as pd

    if v is None or (not isinstance(v, str | bytes | list) and bool(pd.isna(v))):
        return ""
    if isinstance(v, pd.Timestamp | dt.datetime):
        return v.date().isoformat()
    return _text(v)


def _resolve(location: str, data_dir: Path) -> Path:
    path = Path(location)
    return path if path.is_absolute() else data_dir / path


def manifest_path(spec: RegistrySpec, data_dir: Path) -> Path:
    """Where the snapshot's manifest is: declared, or ``<location>.meta.json``."""
    if spec.manifest is not None:
        return _resolve(spec.manifest, data_dir)
    data = _resolve(spec.location, data_dir)
    return data.with_name(data.name + MANIFEST_SUFFIX)


def _count_records(path: Path, data: bytes) -> int:
    if path.suffix.lower() == ".parquet":
        return len(_parquet_frame(data, path))  # type: ignore[arg-type]
    return len(_csv_records(data, path)[2])


def write_manifest(
    data_file: Path, *, as_of: dt.date, holder: str | None = None, to: Path | None = None
) -> SnapshotManifest:
    """Describe ``data_file`` as it is now in its manifest (default ``<file>.meta.json``).

    The exporter's side: run it when the export is taken, never on a file received later
    (the manifest vouches for the bytes). Records are counted as the loader counts them.
    """
    data = data_file.read_bytes()
    manifest = SnapshotManifest(
        as_of=as_of,
        rows=_count_records(data_file, data),
        sha256=hashlib.sha256(data).hexdigest(),
        holder=holder,
    )
    target = to if to is not None else data_file.with_name(data_file.name + MANIFEST_SUFFIX)
    text = json.dumps(manifest.model_dump(mode="json", exclude_none=True), ensure_ascii=False)
    target.write_text(text + "\n", encoding="utf-8", newline="\n")
    return manifest


def _read_manifest(path: Path) -> SnapshotManifest:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RegistryFileError(
            path=path, problem=f"清单不是UTF-8编码 / the manifest is not UTF-8 (byte {exc.start})"
        ) from None
    except json.JSONDecodeError as exc:
        raise RegistryFileError(
            path=path,
            row=exc.lineno,
            problem=f"清单不是有效的JSON / the manifest is not valid JSON: {exc.msg} "
            f"(column {exc.colno})",
        ) from None
    try:
        return SnapshotManifest.model_validate(doc)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(the document)"
        raise RegistryFileError(
            path=path,
            column=key,
            problem=f"清单的 {key} 无效 / manifest key {key!r}: {err['msg']} (expected as_of "
            f"YYYY-MM-DD, rows, sha256, optional holder)",
        ) from None


def _missing_manifest(spec: RegistrySpec, path: Path, manifest: Path) -> RegistryFileError:
    if spec.no_record == "negative":
        zh = "此库“无记录”即核验为“否”，没有清单无法区分空的或失败的导出与真实的“否”"
        en = (
            f"registry {spec.id} answers 'no record' as a verified no (no_record: negative), "
            f"so without a manifest an empty or failed export cannot be told from a true no"
        )
    elif spec.max_age_days is not None:
        zh = f"目录规定快照时效 {spec.max_age_days} 天，需要清单的 as_of"
        en = f"registry {spec.id} declares max_age_days {spec.max_age_days}: its age needs as_of"
    else:
        zh, en = "目录指定了此清单", "the catalogue names this manifest"
    return RegistryFileError(
        path=path,
        problem=f"缺少快照清单 {manifest.name}：{zh} / manifest {manifest.name} (as_of, rows, "
        f"sha256) not found: {en}",
    )


def _check_manifest(
    spec: RegistrySpec,
    path: Path,
    where: Path,
    manifest: SnapshotManifest,
    *,
    rows: int,
    sha256: str,
) -> None:
    """Refuse a file that is not the one its manifest describes."""
    zh: list[str] = []
    en: list[str] = []
    if manifest.rows != rows:
        zh.append(f"清单记载{manifest.rows}行，文件有{rows}行")
        en.append(f"the manifest says {manifest.rows} rows, the file has {rows}")
    if manifest.sha256 != sha256:
        zh.append("文件的SHA-256与清单不符（导出后被改动或截断）")
        en.append(
            f"the file's SHA-256 {sha256[:12]}… is not the manifest's {manifest.sha256[:12]}… "
            f"(changed or cut off since the export)"
        )
    if manifest.holder is not None and manifest.holder not in (spec.holder.zh, spec.holder.en):
        zh.append(f"清单的提供部门“{manifest.holder}”不是目录中的“{spec.holder.zh}”")
        en.append(f"the manifest's holder {manifest.holder!r} is not the catalogue's")
    if zh:
        raise RegistryFileError(
            path=path,
            problem=f"与快照清单 {where.name} 不符：{'；'.join(zh)} / does not match its manifest "
            f"{where.name}: {'; '.join(en)}",
        )


def load_registry(spec: RegistrySpec, data_dir: Path) -> FileRegistry:
    """Load one catalogued file registry from ``data_dir``; raise ``RegistryFileError``.

    The file is read once: header, widths and cells are checked first (the concrete fault,
    by row and column), then the manifest (rows, SHA-256 of the bytes, holder).
    """
    path = _resolve(spec.location, data_dir)
    if not path.is_file():
        raise RegistryFileError(
            path=path,
            problem=f"找不到登记库 {spec.id}（{spec.name.zh}）的数据文件 / data file of registry "
            f"{spec.id} not found",
        )
    data = path.read_bytes()
    where = manifest_path(spec, data_dir)
    manifest = _read_manifest(where) if where.is_file() else None
    if manifest is None and spec.manifest_required:
        raise _missing_manifest(spec, path, where)
    raw = _read_csv(data, path, spec) if spec.kind == "csv" else _read_parquet(data, path, spec)
    rows = _convert(spec, raw, origin=path)
    digest = hashlib.sha256(data).hexdigest()
    note = None
    if manifest is not None:
        _check_manifest(spec, path, where, manifest, rows=len(rows), sha256=digest)
    else:
        note = (
            f"没有快照清单 {where.name}：行数、校验和与导出日期未核对 / no manifest {where.name}: "
            f"row count, checksum and export date are not checked"
        )
    snapshot = Snapshot(
        path=str(path),
        sha256=digest,
        rows=len(rows),
        manifest=str(where) if manifest is not None else None,
        as_of=manifest.as_of if manifest is not None else None,
        holder=manifest.holder if manifest is not None else None,
        note=note,
    )
    return FileRegistry(spec, rows, str(path), snapshot=snapshot)


@dataclass(frozen=True)
class LoadedRegistries:
    """The registries that loaded, and a one-line problem for each that did not."""

    adapters: dict[str, Adapter]
    problems: dict[str, str]
    counts: dict[str, int]
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    """What each loaded file registry was read from (``as_of``, checksum, manifest)."""
    notes: dict[str, str] = field(default_factory=dict)
    """One line for each loaded registry whose snapshot could not be fully checked (no
    manifest: allowed where "no record" means unknown), for health details."""


def load_registries(catalogue: RegistryCatalogue, data_dir: Path) -> LoadedRegistries:
    """Load every registry of the catalogue; one that cannot load is reported, not fatal."""
    adapters: dict[str, Adapter] = {}
    problems: dict[str, str] = {}
    counts: dict[str, int] = {}
    snapshots: dict[str, Snapshot] = {}
    notes: dict[str, str] = {}
    for spec in catalogue:
        try:
            registry = load_registry(spec, data_dir)
        except RegistryFileError as exc:
            problems[spec.id] = str(exc)
            continue
        adapters[spec.id] = registry
        counts[spec.id] = len(registry)
        if registry.snapshot is not None:
            snapshots[spec.id] = registry.snapshot
            if registry.snapshot.note is not None:
                notes[spec.id] = registry.snapshot.note
    return LoadedRegistries(adapters, problems, counts, snapshots, notes)


def describe(loaded: LoadedRegistries) -> str:  # pragma: no cover - used interactively
    return json.dumps(
        {"loaded": loaded.counts, "problems": loaded.problems, "notes": loaded.notes},
        ensure_ascii=False,
    )
