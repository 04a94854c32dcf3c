"""Brute-forcing pseudonymised ID numbers from stored records, given the pseudonym key.

A record holds an applicant's ID number only as ``<mask>~<first 12 hex digits of
HMAC-SHA256(key, id)>``. An ID number is 6 digits of region, 8 of birth date, 3 of sequence
and a check digit (GB 11643). Whatever a record discloses beside the pseudonym (the mask's
visible digits, a birth date, an age on the application date) narrows the ID numbers to try,
and with the key each costs one HMAC. For every record this script counts the candidates
that remain and tries them, up to a budget per person, and reports how many it recovers.

  records  decide the bulk demo applications in process (no storage) and write the records as
           ``audit export`` lines: run it on the code whose records you want to attack;
  attack   read records (``audit export`` lines or bare records) and attack them.

  python scripts/pseudonym_attack.py records --data-dir var/demo --count 300 --key K > r.jsonl
  python scripts/pseudonym_attack.py attack r.jsonl --key K [--regions var/demo] [--budget N]

Without ``--regions`` the attacker completes the mask's visible region digits in every way
(10**k); with it, only the region codes of the people in a demo folder's population.csv (a
well-informed attacker who knows where applicants come from).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import hmac
import json
import statistics
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_CHECK = "10X98765432"
EARLIEST = dt.date(1900, 1, 1)
"""With no birth date nor age in a record, birth dates from here to the application date."""


@dataclass(frozen=True)
class Target:
    """What one record discloses about its applicant's ID number."""

    decision_id: str
    digest: bytes
    """The pseudonym's HMAC prefix (6 bytes)."""
    prefix: str
    """The mask's visible leading digits."""
    suffix: str
    """The mask's visible trailing characters (sequence digits and check digit)."""
    first_birth: dt.date
    last_birth: dt.date
    """The birth dates the record allows (one day when it holds the date)."""
    disclosed: str
    """``birth date``, ``age`` or ``nothing``."""


def _age_on(born: dt.date, on: dt.date) -> int:
    years = on.year - born.year
    try:
        anniversary = born.replace(year=on.year)
    except ValueError:  # 29 February in a common year
        anniversary = dt.date(on.year, 2, 28)
    return years - 1 if on <= anniversary else years


def _dates_of_age(age: int, on: dt.date) -> tuple[dt.date, dt.date]:
    """The first and last birth dates of people aged ``age`` (周岁) on ``on``."""
    lo = dt.date(on.year - age - 2, 1, 1)
    days = [lo + dt.timedelta(days=i) for i in range(366 * 3)]
    matching = [d for d in days if _age_on(d, on) == age]
    return matching[0], matching[-1]


def target_of(record: dict[str, Any]) -> Target | None:
    """What ``record`` discloses, or None when it holds no ID pseudonym."""
    pseudonym = (record.get("applicant") or {}).get("id_number", "")
    mask, sep, digest = pseudonym.partition("~")
    if not sep or len(mask) != 18 or len(digest) < 12:
        return None
    prefix = mask[: len(mask) - len(mask.lstrip("0123456789"))]
    suffix = mask[len(mask.rstrip("0123456789X")) :]
    on = dt.date.fromisoformat(record["application_date"])
    first, last, disclosed = EARLIEST, on, "nothing"
    for item in record.get("evidence", []):
        born = (item.get("values") or {}).get("birth_date")
        age = (item.get("ages") or {}).get("birth_date")
        if item.get("source") != "population":
            continue
        if isinstance(born, str):
            first = last = dt.date.fromisoformat(born)
            disclosed = "birth date"
        elif isinstance(age, int):
            first, last = _dates_of_age(age, on)
            disclosed = "age"
    return Target(
        record["decision_id"], bytes.fromhex(digest[:12]), prefix, suffix, first, last, disclosed
    )


def _part_sums(strings: list[str], weights: np.ndarray) -> np.ndarray:
    digits = np.array([[int(c) for c in s] for s in strings], dtype=np.int64).reshape(
        len(strings), len(weights)
    )
    sums: np.ndarray = digits @ weights
    return sums


@dataclass
class Result:
    target: Target
    candidates: int
    """ID numbers consistent with the record (before trying the check digit)."""
    tried: int
    """HMACs computed."""
    found: str | None
    seconds: float


def attack(target: Target, key: bytes, *, regions: list[str] | None, budget: int) -> Result:
    """Try every ID number the record allows (at most ``budget`` HMACs)."""
    started = time.perf_counter()
    prefix = target.prefix[:6]
    free = 6 - len(prefix)
    if regions is None:
        n_regions = 10**free
        region_codes = [prefix + str(i).zfill(free) for i in range(n_regions if budget > 0 else 0)]
    else:
        region_codes = sorted({r for r in regions if r.startswith(prefix)})
        n_regions = len(region_codes)
    days = (target.last_birth - target.first_birth).days + 1
    dates = [(target.first_birth + dt.timedelta(days=i)).strftime("%Y%m%d") for i in range(days)]
    visible_tail = target.suffix
    if len(visible_tail) >= 4:
        sequences = [visible_tail[-4:-1]]
    else:
        sequences = [str(i).zfill(3) for i in range(1000)]
    check = visible_tail[-1] if visible_tail else None
    candidates = n_regions * len(dates) * len(sequences)
    tried = 0
    if not region_codes or budget <= 0:
        return Result(target, candidates, 0, None, time.perf_counter() - started)
    r_sum = _part_sums(region_codes, _WEIGHTS[:6])
    s_sum = _part_sums(sequences, _WEIGHTS[14:])
    is_check = np.array([c == check for c in _CHECK]) if check is not None else None
    step = max(1, 1_000_000 // len(sequences))  # about a million candidates at a time
    for day in dates:
        d_sum = int(_part_sums([day], _WEIGHTS[6:14])[0])
        for start in range(0, len(region_codes), step):
            totals = (r_sum[start : start + step, None] + d_sum + s_sum[None, :]) % 11
            if is_check is not None:
                ri, si = np.nonzero(is_check[totals])
            else:
                ri, si = np.indices(totals.shape).reshape(2, -1)
            for r, s in zip(ri.tolist(), si.tolist(), strict=True):
                if tried >= budget:
                    return Result(target, candidates, tried, None, time.perf_counter() - started)
                id_number = region_codes[start + r] + day + sequences[s] + _CHECK[totals[r, s]]
                tried += 1
                if hmac.digest(key, id_number.encode(), hashlib.sha256)[:6] == target.digest:
                    return Result(
                        target, candidates, tried, id_number, time.perf_counter() - started
                    )
    return Result(target, candidates, tried, None, time.perf_counter() - started)


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                row = json.loads(line)
                yield row.get("record", row)


def demo_regions(folder: Path) -> list[str]:
    """The region codes (first 6 digits) of every ID number in a demo folder's population.csv
    files."""
    codes: set[str] = set()
    for path in folder.rglob("population.csv"):
        with path.open(encoding="utf-8") as f:
            codes.update(row["id_number"][:6] for row in csv.DictReader(f))
    return sorted(codes)


def report(results: Iterable[Result]) -> dict[str, Any]:
    rows = list(results)
    by: dict[str, list[Result]] = {}
    for r in rows:
        by.setdefault(r.target.disclosed, []).append(r)
    out: dict[str, Any] = {"people": len(rows), "recovered": sum(r.found is not None for r in rows)}
    for disclosed, group in sorted(by.items()):
        counts = [r.candidates for r in group]
        out[disclosed] = {
            "people": len(group),
            "recovered": sum(r.found is not None for r in group),
            "candidates_per_person": {
                "min": min(counts),
                "median": statistics.median(counts),
                "max": max(counts),
            },
            "hmacs_tried": sum(r.tried for r in group),
            "seconds": round(sum(r.seconds for r in group), 2),
        }
    return out


def _records(args: argparse.Namespace) -> None:
    from adapters.files import load_registries
    from api.service import DecisionRequest, DecisionService
    from engine import RulesetCatalog
    from engine.registries import load_catalogue

    catalogue = load_catalogue(args.rulesets / "registries.yaml")
    service = DecisionService(
        catalog=RulesetCatalog.load(args.rulesets, sources=catalogue),
        adapters=load_registries(catalogue, args.data_dir).adapters,
        registries=catalogue,
        store=None,
        pseudonym_key=args.key,
    )
    lines = (args.data_dir / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    for seq, line in enumerate(lines[: args.count], start=1):
        record = service.decide_unstored(DecisionRequest.model_validate(json.loads(line)))[1]
        print(
            json.dumps({"seq": seq, "record": json.loads(record.body_json())}, ensure_ascii=False)
        )
    service.close()


def _attack(args: argparse.Namespace) -> None:
    regions = demo_regions(args.regions) if args.regions else None
    key = args.key.encode("utf-8")
    results = []
    for n, record in enumerate(read_records(args.file)):
        if args.limit is not None and n >= args.limit:
            break
        target = target_of(record)
        if target is not None:
            results.append(attack(target, key, regions=regions, budget=args.budget))
    print(json.dumps(report(results), ensure_ascii=False, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("records", help="decide bulk demo applications; write their records")
    rec.add_argument("--data-dir", type=Path, default=Path("var/demo"))
    rec.add_argument("--rulesets", type=Path, default=Path("rulesets"))
    rec.add_argument("--count", type=int, default=300)
    rec.add_argument("--key", required=True)
    att = sub.add_parser("attack", help="brute-force the ID pseudonyms of stored records")
    att.add_argument("file", type=Path)
    att.add_argument("--key", required=True)
    att.add_argument("--regions", type=Path, help="a demo folder: try only its region codes")
    att.add_argument("--budget", type=int, default=2_000_000, help="HMACs per person at most")
    att.add_argument("--limit", type=int, help="attack only the first LIMIT records")
    args = parser.parse_args(argv)
    (_records if args.command == "records" else _attack)(args)


if __name__ == "__main__":
    main()
