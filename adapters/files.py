"""File-backed shared-data registries: one CSV per registry, indexed in memory for O(1) lookups."""

from __future__ import annotations

import abc
import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

from adapters.base import Adapter, AdapterFailure, FactValue, Lookup, LookupMode, Provenance
from adapters.base import raw_hash as _raw_hash

__all__ = [
    "CSV_COLUMNS",
    "BusinessRegistry",
    "EducationRegistry",
    "PopulationRegistry",
    "PropertyRegistry",
    "RegistryFileError",
    "SocialInsuranceRegistry",
    "SubsidyHistoryRegistry",
    "load_file_registries",
]

CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "population.csv": (
        "record_id",
        "id_number",
        "name",
        "birth_date",
        "gender",
        "hukou_city",
        "hukou_since",
    ),
    "education.csv": (
        "record_id",
        "certificate_number",
        "holder_id_number",
        "holder_name",
        "degree",
        "study_mode",
        "school",
        "graduation_date",
    ),
    "social_insurance.csv": (
        "record_id",
        "id_number",
        "city",
        "status",
        "months_contributed",
        "employer_credit_code",
        "employer_name",
    ),
    "business_registry.csv": (
        "record_id",
        "credit_code",
        "name",
        "registered_city",
        "status",
        "established_date",
    ),
    "property.csv": ("record_id", "id_number", "city", "right_type"),
    "subsidy_history.csv": (
        "record_id",
        "id_number",
        "service",
        "granted_date",
        "amount_yuan",
    ),
}
"""The layout of every registry file (file name -> columns, in the order the demo writes them).

Each file is UTF-8 with a header row; extra columns are allowed and ignored (but they are part
of the raw record that ``raw_sha256`` covers).
"""

_BAD_DATA = "ADAPTER_BAD_DATA"
_INTEGER = re.compile(r"^[+-]?[0-9]+$")

RawRow = dict[str, str]


class RegistryFileError(Exception):
    """Raised at load time when a registry CSV file is missing, unreadable or lacks columns."""

    def __init__(self, *, path: Path, problem: str, missing_columns: Sequence[str] = ()) -> None:
        self.path = path
        self.problem = problem
        self.missing_columns = tuple(missing_columns)
        super().__init__(f"{path}: {problem}")


def _to_date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _to_int(text: str) -> int:
    if not _INTEGER.match(text):
        raise ValueError("not an integer")
    return int(text)


_CONVERTERS: dict[str, Callable[[str], FactValue]] = {
    "string": str,
    "integer": _to_int,
    "date": _to_date,
}


def _read_csv(path: Path, *, columns: Sequence[str]) -> list[RawRow]:
    """All rows of ``path`` as dicts of strings (empty cells are ``''``), after checking columns."""
    import pandas as pd  # heavy: imported only when a registry is loaded

    if not path.is_file():
        raise RegistryFileError(
            path=path,
            problem=f"找不到登记库文件 / registry file not found (expected columns: "
            f"{', '.join(columns)})",
            missing_columns=columns,
        )
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise RegistryFileError(
            path=path,
            problem=f"文件为空，缺少表头 / the file is empty; expected a header row with "
            f"{', '.join(columns)}",
            missing_columns=columns,
        ) from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise RegistryFileError(
            path=path, problem=f"无法解析CSV / cannot parse the CSV file: {exc}"
        ) from exc
    present = [str(c) for c in frame.columns]
    missing = [c for c in columns if c not in present]
    if missing:
        raise RegistryFileError(
            path=path,
            problem=f"缺少列 / missing column(s): {', '.join(missing)} "
            f"(found: {', '.join(present) or 'none'})",
            missing_columns=missing,
        )
    records: list[RawRow] = [
        {str(k): str(v) for k, v in row.items()} for row in frame.to_dict(orient="records")
    ]
    return records


@dataclass(frozen=True, slots=True)
class _Row:
    """One registry record: the raw strings, the typed fields, and any conversion problem."""

    line: int
    raw: RawRow
    typed: dict[str, FactValue]
    problem: str | None


class _FileRegistry(abc.ABC):
    """Shared machinery: column checks, typed conversion, argument validation, provenance."""

    source: str
    version: str = "files-1"
    file_name: ClassVar[str]
    key_column: ClassVar[str]
    modes: ClassVar[tuple[LookupMode, ...]]
    field_types: ClassVar[Mapping[str, str]]
    """Answerable fields and their type names."""
    column_types: ClassVar[Mapping[str, str]]
    """Typed (non-string) columns converted at load time."""
    required_params: ClassVar[tuple[str, ...]] = ()
    in_memory: ClassVar[bool] = True
    """Answers from memory without blocking: the gatherer calls it inline, no time box needed."""

    def __init__(self, rows: Sequence[Mapping[str, str]], *, origin: str = "<memory>") -> None:
        self.origin = origin
        columns = CSV_COLUMNS[self.file_name]
        if rows:
            missing = [c for c in columns if c not in rows[0]]
            if missing:
                raise RegistryFileError(
                    path=Path(origin),
                    problem=f"缺少列 / missing column(s): {', '.join(missing)}",
                    missing_columns=missing,
                )
        self._rows: list[_Row] = [
            self._convert(line=i + 2, raw=dict(r)) for i, r in enumerate(rows)
        ]
        self._index: dict[str, list[_Row]] = {}
        for row in self._rows:
            self._index.setdefault(row.raw[self.key_column], []).append(row)

    @classmethod
    def from_csv(cls, path: Path) -> Self:
        """Load the registry from its CSV file (see ``CSV_COLUMNS``)."""
        return cls(_read_csv(path, columns=CSV_COLUMNS[cls.file_name]), origin=str(path))

    def _convert(self, *, line: int, raw: RawRow) -> _Row:
        typed: dict[str, FactValue] = {}
        problem: str | None = None
        for column, type_name in self.column_types.items():
            try:
                typed[column] = _CONVERTERS[type_name](raw[column])
            except ValueError:
                problem = (
                    f"{self.origin} 第{line}行 {column} 列不是有效的{type_name} / "
                    f"line {line}, column {column}: not a valid {type_name}"
                )
                break
        return _Row(line=line, raw=raw, typed=typed, problem=problem)

    @abc.abstractmethod
    def lookup(
        self,
        key: str,
        *,
        fields: Sequence[str],
        mode: LookupMode,
        params: Mapping[str, str],
        now: dt.datetime,
    ) -> Lookup:
        """Answer the requested ``fields`` for ``key`` (implemented by each kind of registry)."""

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(origin={self.origin!r}, records={len(self._rows)})"

    @property
    def fields(self) -> Mapping[str, str]:
        """The fields this registry can answer, with their type names."""
        return dict(self.field_types)

    def supports(self, mode: LookupMode) -> bool:
        """Whether the registry answers in ``mode`` (``fetch`` returns data, ``verify`` yes/no)."""
        return mode in self.modes

    def _check_request(
        self, *, fields: Sequence[str], mode: LookupMode, params: Mapping[str, str]
    ) -> None:
        name = type(self).__name__
        if not self.supports(mode):
            raise ValueError(
                f"{name}（{self.source}）不支持 {mode} 方式 / {name} ({self.source}) does not "
                f"support mode {mode!r}; supported: {', '.join(self.modes)}"
            )
        unknown = [f for f in fields if f not in self.field_types]
        if unknown:
            raise ValueError(
                f"{name}（{self.source}）没有字段 {', '.join(unknown)} / {name} ({self.source}) "
                f"has no field(s) {', '.join(repr(f) for f in unknown)}; available: "
                f"{', '.join(self.field_types)}"
            )
        missing = [p for p in self.required_params if not params.get(p)]
        extra = [p for p in params if p not in self.required_params]
        if missing or extra:
            raise ValueError(
                f"{name}（{self.source}）参数错误 / {name} ({self.source}) expects params "
                f"{list(self.required_params)}; missing {missing}, unexpected {extra}"
            )

    def _provenance(self, rows: Sequence[_Row], *, now: dt.datetime, hashed: bool) -> Provenance:
        reference = ",".join(r.raw["record_id"] for r in rows) or None
        return Provenance(
            source=self.source,
            adapter=f"files.{type(self).__name__}",
            adapter_version=self.version,
            reference=reference,
            retrieved_at=now,
            raw_sha256=_raw_hash([r.raw for r in rows]) if hashed else None,
        )

    def _fail_on_bad_rows(self, rows: Sequence[_Row]) -> None:
        for row in rows:
            if row.problem is not None:
                raise AdapterFailure(code=_BAD_DATA, message=row.problem)


class _FetchRegistry(_FileRegistry):
    """A registry with at most one record per key that returns the record's fields."""

    modes = ("fetch",)

    def lookup(
        self,
        key: str,
        *,
        fields: Sequence[str],
        mode: LookupMode,
        params: Mapping[str, str],
        now: dt.datetime,
    ) -> Lookup:
        """The requested fields of the record keyed ``key``, or ``not_found``.

        Raises ``ValueError`` for a field or mode the registry does not have, and
        ``AdapterFailure`` (``ADAPTER_BAD_DATA``) when the matching record is malformed or
        the key matches more than one record.
        """
        self._check_request(fields=fields, mode=mode, params=params)
        rows = self._index.get(key, [])
        if not rows:
            return Lookup(
                status="not_found",
                mode=mode,
                values={},
                provenance=self._provenance(rows, now=now, hashed=False),
            )
        if len(rows) > 1:
            lines = ", ".join(str(r.line) for r in rows)
            raise AdapterFailure(
                code=_BAD_DATA,
                message=f"{self.origin} 第{lines}行的 {self.key_column} 重复 / lines {lines} "
                f"share the same {self.key_column}; the record is ambiguous",
            )
        self._fail_on_bad_rows(rows)
        row = rows[0]
        values: dict[str, FactValue] = {
            f: row.typed[f] if f in row.typed else row.raw[f] for f in fields
        }
        return Lookup(
            status="found",
            mode=mode,
            values=values,
            provenance=self._provenance(rows, now=now, hashed=True),
        )


class _VerifyRegistry(_FileRegistry):
    """A registry that answers yes/no questions and never returns the underlying records.

    The registry is authoritative: a person with no matching record gets ``found`` with every
    answer ``False`` (a verified negative), and the hash of the empty record list.
    """

    modes = ("verify",)

    @abc.abstractmethod
    def _select(self, rows: Sequence[_Row], params: Mapping[str, str]) -> list[_Row]:
        """The person's rows that the question is about (e.g. those in the asked-for city)."""

    @abc.abstractmethod
    def _answers(self, rows: Sequence[_Row]) -> dict[str, bool]:
        """The yes/no answers derived from those rows."""

    def lookup(
        self,
        key: str,
        *,
        fields: Sequence[str],
        mode: LookupMode,
        params: Mapping[str, str],
        now: dt.datetime,
    ) -> Lookup:
        """Boolean answers for ``key`` given ``params``; only the requested answers are returned.

        Raises ``ValueError`` for a field, mode or parameter the registry does not have, and
        ``AdapterFailure`` (``ADAPTER_BAD_DATA``) when a matching record is malformed.
        """
        self._check_request(fields=fields, mode=mode, params=params)
        rows = self._select(self._index.get(key, []), params)
        self._fail_on_bad_rows(rows)
        answers = self._answers(rows)
        values: dict[str, FactValue] = {f: answers[f] for f in fields}
        return Lookup(
            status="found",
            mode=mode,
            values=values,
            provenance=self._provenance(rows, now=now, hashed=True),
        )


class PopulationRegistry(_FetchRegistry):
    """人口库: birth date, gender and household registration (户籍), keyed by resident ID number."""

    source = "population"
    file_name = "population.csv"
    key_column = "id_number"
    field_types: ClassVar[Mapping[str, str]] = {
        "birth_date": "date",
        "hukou_city": "string",
        "hukou_since": "date",
        "gender": "string",
    }
    column_types: ClassVar[Mapping[str, str]] = {"birth_date": "date", "hukou_since": "date"}


class EducationRegistry(_FetchRegistry):
    """学历库: degree certificates, keyed by certificate number."""

    source = "education"
    file_name = "education.csv"
    key_column = "certificate_number"
    field_types: ClassVar[Mapping[str, str]] = {
        "holder_id_number": "string",
        "degree": "string",
        "study_mode": "string",
        "school": "string",
        "graduation_date": "date",
    }
    column_types: ClassVar[Mapping[str, str]] = {"graduation_date": "date"}


class SocialInsuranceRegistry(_FetchRegistry):
    """社保库: current social-insurance contributions and employer, keyed by resident ID number."""

    source = "social_insurance"
    file_name = "social_insurance.csv"
    key_column = "id_number"
    field_types: ClassVar[Mapping[str, str]] = {
        "city": "string",
        "status": "string",
        "months_contributed": "integer",
        "employer_credit_code": "string",
        "employer_name": "string",
    }
    column_types: ClassVar[Mapping[str, str]] = {"months_contributed": "integer"}


class BusinessRegistry(_FetchRegistry):
    """市场主体登记库: company registration, keyed by unified social credit code."""

    source = "business_registry"
    file_name = "business_registry.csv"
    key_column = "credit_code"
    field_types: ClassVar[Mapping[str, str]] = {
        "registered_city": "string",
        "status": "string",
        "name": "string",
        "established_date": "date",
    }
    column_types: ClassVar[Mapping[str, str]] = {"established_date": "date"}


class PropertyRegistry(_VerifyRegistry):
    """不动产登记库 (verify only): does the person own, or rent public, housing in a city?"""

    source = "property"
    file_name = "property.csv"
    key_column = "id_number"
    field_types: ClassVar[Mapping[str, str]] = {
        "owns_housing": "boolean",
        "rents_public_housing": "boolean",
    }
    column_types: ClassVar[Mapping[str, str]] = {}
    required_params = ("city",)

    def _select(self, rows: Sequence[_Row], params: Mapping[str, str]) -> list[_Row]:
        return [r for r in rows if r.raw["city"] == params["city"]]

    def _answers(self, rows: Sequence[_Row]) -> dict[str, bool]:
        return {
            "owns_housing": any(r.raw["right_type"] == "产权" for r in rows),
            "rents_public_housing": any(r.raw["right_type"] == "公共住房承租" for r in rows),
        }


class SubsidyHistoryRegistry(_VerifyRegistry):
    """补贴发放记录 (verify only): has the person received a given service's subsidy before?"""

    source = "subsidy_history"
    file_name = "subsidy_history.csv"
    key_column = "id_number"
    field_types: ClassVar[Mapping[str, str]] = {"received_before": "boolean"}
    column_types: ClassVar[Mapping[str, str]] = {}
    required_params = ("service",)

    def _select(self, rows: Sequence[_Row], params: Mapping[str, str]) -> list[_Row]:
        return [r for r in rows if r.raw["service"] == params["service"]]

    def _answers(self, rows: Sequence[_Row]) -> dict[str, bool]:
        return {"received_before": bool(rows)}


_REGISTRIES: tuple[type[_FileRegistry], ...] = (
    PopulationRegistry,
    EducationRegistry,
    SocialInsuranceRegistry,
    BusinessRegistry,
    PropertyRegistry,
    SubsidyHistoryRegistry,
)


def load_file_registries(data_dir: Path) -> dict[str, Adapter]:
    """Load all six registries from ``data_dir``, keyed by source name.

    Raises ``RegistryFileError`` naming the file and the missing columns when a file is
    missing or incomplete.
    """
    loaded: dict[str, Adapter] = {}
    for registry in _REGISTRIES:
        loaded[registry.source] = registry.from_csv(data_dir / registry.file_name)
    return loaded
