"""Translate a compiled ruleset into a GoRules JDM decision graph, to benchmark zen-engine.

zen-engine (GoRules' evaluator of JSON Decision Models) is the yardstick of
``scripts/bench_engine.py``; it is a benchmark-only extra (``pip install -e '.[bench]'``),
never a runtime dependency. The graph is generated from our compiled form, so it decides
what our engine decides, for any shipped service:

    input → "criteria" (expression node) → "outputs" (decision table) → "outcome" (expression
    node) → output

- The expression node computes the parameters in force on the application date, every named
  value (expression or decision table), each criterion's Kleene truth and its status
  ``criteria.<id>`` (``PASS``/``FAIL``/``UNKNOWN``), and each outputs rule's truth
  ``rows.r<i>``. A missing fact is ``null``; every operation on a ``null`` gives ``null``
  (UNKNOWN), ``and``/``or`` follow Kleene's tables, so a criterion is FAIL only on verified
  facts, exactly as ours. Sub-terms are computed once each, under ``_``.
- The decision table picks the outputs: one input column per rule's truth, hit policy
  ``first`` (``collect`` for multi-hit tables).
- The outcome node applies engine/decision.py's rule: REFERRED if any criterion is UNKNOWN or a
  ``refer`` criterion FAILs; else REJECTED if a ``reject`` criterion FAILs; else APPROVED when
  the outputs table gives a complete result under its hit policy (else REFERRED).

Dates travel as ISO text and are compared through ``d()``. 周岁 (``age_on``) and
``years_before``/``years_after`` follow engine/dates.py (N full years only from the day after
the Nth birthday; 29 February falls on 28 February in common years), which zen's own
``diff``/``add`` do not. Numbers are zen's exact decimals (28 digits where ours keep 34).

Usage: ``python scripts/zen_jdm.py rulesets/talent-housing-subsidy/2026.yaml > graph.json``
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.expr import (
    And,
    Arith,
    Call,
    Compare,
    Expr,
    If,
    In,
    Index,
    ListLit,
    Literal,
    Name,
    Neg,
    Not,
    Or,
    unparse,
)
from engine.ruleset import Ruleset

__all__ = ["Untranslatable", "to_jdm", "zen_context", "zen_decision"]

_DATE_FUNCS = {"years_before": -1, "years_after": 1}
_RETURNS = {
    "age_on": "integer",
    "years_before": "date",
    "years_after": "date",
    "days_between": "integer",
    "date": "date",
    "year": "integer",
    "month": "integer",
    "day": "integer",
}
_SINGLE = ("UNIQUE", "FIRST", "ANY")
_COLLECT = ("COLLECT SUM", "COLLECT COUNT", "COLLECT MIN", "COLLECT MAX")


class Untranslatable(Exception):
    """The ruleset uses a construct this translator does not render in JDM (named in the text)."""


def _lit(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | Decimal):
        return format(v, "f") if isinstance(v, Decimal) else str(v)
    if isinstance(v, dt.date):
        return json.dumps(v.isoformat())
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    raise Untranslatable(f"literal {v!r}")


def _leap(year: str) -> str:
    return f"(({year}) % 4 == 0 and (({year}) % 100 != 0 or ({year}) % 400 == 0))"


def _md(date: str) -> str:
    return f"(d({date}).month() * 100 + d({date}).day())"


class _Translator:
    """Builds the expressions of the "criteria" node: each term once, under ``_.k<n>``."""

    def __init__(self, ruleset: Ruleset, *, inline: bool = True) -> None:
        self.rs = ruleset
        self.inline = inline
        self.exprs: list[tuple[str, str]] = []
        self.memo: dict[str, str] = {}
        self.locals: dict[str, str] = {}
        """Parameter and value names → their key in the node (``p.<name>``, ``v.<name>``)."""
        self.mappings: dict[str, str] = {}
        """Static tables and mapping parameters → their key (an object)."""

    # --- emitting ------------------------------------------------------------------------

    def emit(self, text: str, key: str | None = None) -> str:
        if key is None:
            key = f"_.k{len(self.exprs)}"
        self.exprs.append((key, text))
        return f"$.{key}"

    def term(self, node: Expr, text_of: Any, key: str | None = None) -> str:
        """A reference to the value of ``node`` (memoised by its text), under ``key`` if new."""
        if isinstance(node, Literal):
            return _lit(node.value)
        if isinstance(node, Name) and node.dotted not in self.mappings:
            return self.locals.get(node.dotted, node.dotted)
        name, key = key, unparse(node)
        ref = self.memo.get(key)
        if ref is None:
            ref = self.emit(text_of(node), name)
            self.memo[key] = ref
        return ref

    # --- types ---------------------------------------------------------------------------

    def type_of(self, node: Expr) -> str:
        match node:
            case Literal(value=v):
                if isinstance(v, bool):
                    return "boolean"
                if isinstance(v, dt.date):
                    return "date"
                return "string" if isinstance(v, str) else "number"
            case Name():
                return self.rs.names.get(node.dotted, "table")
            case Call(func=f, args=args):
                if f in _RETURNS:
                    return _RETURNS[f]
                return self.type_of(args[0])
            case Arith(left=l, right=r):
                lt, rt = self.type_of(l), self.type_of(r)
                if lt == "date":
                    return "integer" if rt == "date" else "date"
                return "number"
            case Neg(operand=o):
                return self.type_of(o)
            case If(then=a):
                return self.type_of(a)
            case Index(table=t):
                return "string" if t.dotted in self.string_tables else "number"
            case _:
                return "boolean"

    @property
    def string_tables(self) -> set[str]:
        out = {n for n, t in self.rs.tables.items() if any(isinstance(v, str) for v in t.values())}
        return out | {p.name for p in self.rs.parameters if p.mapping and p.type == "string"}

    # --- values --------------------------------------------------------------------------

    def value(self, node: Expr) -> str:
        return self.term(node, self._value_text)

    def _value_text(self, node: Expr) -> str:
        match node:
            case Call(func=f, args=args):
                refs = [self.value(a) for a in args]
                guard = " or ".join(
                    f"{r} == null"
                    for r, a in zip(refs, args, strict=True)
                    if not isinstance(a, Literal)
                )
                body = self._call(f, refs, args)
                return f"({guard}) ? null : ({body})" if guard else body
            case Index(table=t, key=k):
                key = self.value(k)
                return f"{key} == null ? null : {self.mappings[t.dotted]}[{key}]"
            case Arith(op=op, left=l, right=r):
                a, b = self.value(l), self.value(r)
                if self.type_of(l) == "date":
                    if self.type_of(r) == "date":
                        body = f'd({a}).diff(d({b}), "day")'
                    else:
                        sign = "" if op == "+" else "-"
                        body = f'd({a}).add({sign}({b}), "d").format("%Y-%m-%d")'
                else:
                    body = f"{a} {op} {b}"
                return f"({a} == null or {b} == null) ? null : ({body})"
            case Neg(operand=o):
                a = self.value(o)
                return f"{a} == null ? null : -({a})"
            case If(cond=c, then=a, orelse=b):
                cond = self.truth(c)
                return f"{cond} == null ? null : ({cond} ? {self.value(a)} : {self.value(b)})"
            case ListLit():
                raise Untranslatable("a list outside 'in'")
            case _:
                return self._truth_text(node)

    def _call(self, f: str, refs: list[str], args: tuple[Expr, ...]) -> str:
        if f == "age_on":
            birth, on = refs
            return f"d({on}).year() - d({birth}).year() - ({_md(on)} <= {_md(birth)} ? 1 : 0)"
        if f in _DATE_FUNCS:
            day, n = refs
            if isinstance(args[1], Literal):
                years = str(args[1].value if f == "years_after" else -args[1].value)  # type: ignore[operator]
            else:
                years = f"({n})" if f == "years_after" else f"(-({n}))"
            target = f"(d({day}).year() + {years})"
            return (
                f"((d({day}).month() == 2 and d({day}).day() == 29 and not {_leap(target)}) ? "
                f'd({day}).add(-1, "d").add({years}, "y") : d({day}).add({years}, "y"))'
                '.format("%Y-%m-%d")'
            )
        if f == "days_between":
            return f'd({refs[1]}).diff(d({refs[0]}), "day")'
        if f == "date":
            return refs[0]
        if f in ("year", "month", "day"):
            return f"d({refs[0]}).{f}()"
        if f in ("floor", "ceil", "round"):
            if len(refs) == 1:
                return f"{f}({refs[0]})"
            places = args[1]
            assert isinstance(places, Literal)
            if f == "round":
                return f"round({refs[0]}, {refs[1]})"
            scale = 10 ** int(str(places.value))
            return f"{f}({refs[0]} * {scale}) / {scale}"
        if f in ("min", "max"):
            if self.type_of(args[0]) == "date":
                return f'{f}([{", ".join(f"d({r})" for r in refs)}]).format("%Y-%m-%d")'
            return f"{f}([{', '.join(refs)}])"
        if f == "abs":
            return f"abs({refs[0]})"
        raise Untranslatable(f"function {f}")

    # --- truth ---------------------------------------------------------------------------

    def truth(self, node: Expr) -> str:
        return self.term(node, self._truth_text)

    def _truth_text(self, node: Expr) -> str:
        match node:
            case Compare(op=op, left=l, right=r):
                a, b = self.value(l), self.value(r)
                date = self.type_of(l) == "date" or self.type_of(r) == "date"
                if self.type_of(l) == "string" and op not in ("==", "!="):
                    raise Untranslatable("ordering of strings")
                test = f"d({a}) {op} d({b})" if date else f"{a} {op} {b}"
                guard = " or ".join(
                    f"{x} == null" for x, n in ((a, l), (b, r)) if not isinstance(n, Literal)
                )
                return f"({guard}) ? null : ({test})" if guard else test
            case In(needle=n, haystack=h, negated=neg):
                a = self.value(n)
                if isinstance(h, ListLit):
                    if self.type_of(n) == "date":
                        raise Untranslatable("a date in a list")
                    choices = "[" + ", ".join(self.value(i) for i in h.items) + "]"
                else:
                    assert isinstance(h, Name)
                    choices = f"keys({self.mappings[h.dotted]})"
                word = "not in" if neg else "in"
                return f"{a} == null ? null : ({a} {word} {choices})"
            case Not(operand=o):
                a = self.truth(o)
                return f"{a} == null ? null : not {a}"
            case And(items=items) | Or(items=items):
                refs = [
                    f"({self._truth_text(i)})" if self.inline and _simple(i) else self.truth(i)
                    for i in items
                ]
                decisive = "false" if isinstance(node, And) else "true"
                other = "true" if isinstance(node, And) else "false"
                any_decisive = " or ".join(f"{r} == {decisive}" for r in refs)
                any_null = " or ".join(f"{r} == null" for r in refs)
                return f"({any_decisive}) ? {decisive} : (({any_null}) ? null : {other})"
            case Literal(value=v) if isinstance(v, bool):
                return _lit(v)
            case Name():
                return self.term(node, self._value_text)
            case _:
                return self.value(node)

    # --- the ruleset ---------------------------------------------------------------------

    def parameters(self) -> None:
        day = "application.date"
        for name, table in self.rs.tables.items():
            self.mappings[name] = self.emit(_object(table), f"t.{name}")
        for p in self.rs.parameters:
            choice = "null"
            for period in reversed(p.periods):
                test = f'd({day}) >= d("{period.start.isoformat()}")'
                if period.end is not None:
                    test += f' and d({day}) <= d("{period.end.isoformat()}")'
                v = _object(period.value) if p.mapping else _lit(period.value)  # type: ignore[arg-type]
                choice = f"({day} != null and {test}) ? {v} : ({choice})"
            ref = self.emit(choice, f"p.{p.name}")
            if p.mapping:
                self.mappings[p.name] = ref
            else:
                self.locals[p.name] = ref

    def values(self) -> None:
        for v in self.rs.values:
            if v.expr is not None:
                text = self._value_text(v.expr) if not _atomic(v.expr) else self.value(v.expr)
            else:
                assert v.table is not None
                table = v.table
                if table.hit_policy not in (*_SINGLE, *_COLLECT):
                    raise Untranslatable(f"value table with hit policy {table.hit_policy}")
                rows = [self.truth(r.when) if r.when is not None else "true" for r in table.rows]
                cells = [self.value(r.cells[v.name]) for r in table.rows]
                default = self.value(table.default[v.name]) if table.default is not None else "null"
                text = _table_value(table.hit_policy, rows, cells, default)
            self.locals[v.name] = self.emit(text, f"v.{v.name}")

    def criteria(self) -> list[str]:
        keys = []
        for crit in self.rs.criteria:
            t = self.truth(crit.condition)
            key = f"criteria.{crit.id}"
            self.emit(f'{t} == true ? "PASS" : ({t} == false ? "FAIL" : "UNKNOWN")', key)
            keys.append(key)
        return keys


def _simple(node: Expr) -> bool:
    """A comparison or membership test of facts and constants: cheap to write out in place."""
    match node:
        case Compare(left=l, right=r):
            return _atomic(l) and _atomic(r)
        case In(needle=n, haystack=h):
            return _atomic(n) and isinstance(h, ListLit)
        case Not(operand=o):
            return isinstance(o, Name)
    return False


def _atomic(node: Expr) -> bool:
    return isinstance(node, Literal | Name)


def _object(mapping: Mapping[str, object]) -> str:
    return (
        "{"
        + ", ".join(
            f"{json.dumps(str(k), ensure_ascii=False)}: {_lit(v)}" for k, v in mapping.items()
        )
        + "}"
    )


def _table_value(policy: str, rows: list[str], cells: list[str], default: str) -> str:
    """One column of a decision table as a single Kleene-safe expression (for values)."""
    hits = " + ".join(f"({r} == true ? 1 : 0)" for r in rows)
    undecided = " or ".join(f"{r} == null" for r in rows)
    if policy == "FIRST":
        out = default
        for r, c in zip(reversed(rows), reversed(cells), strict=True):
            out = f"{r} == true ? {c} : ({r} == null ? null : ({out}))"
        return out
    if policy in _SINGLE:  # UNIQUE, and ANY over one column when outputs agree
        pick = "null"
        for r, c in zip(reversed(rows), reversed(cells), strict=True):
            pick = f"{r} == true ? {c} : ({pick})"
        if policy == "ANY":
            raise Untranslatable("ANY value table")
        return (
            f"({hits}) > 1 ? null : (({undecided}) ? null : (({hits}) == 0 ? {default} : ({pick})))"
        )
    if policy == "COLLECT COUNT":
        return f"({undecided}) ? null : ({hits})"
    picked = (
        "[" + ", ".join(f"{r} == true ? {c} : null" for r, c in zip(rows, cells, strict=True)) + "]"
    )
    chosen = f"filter({picked}, # != null)"
    missing_cell = " or ".join(
        f"({r} == true and {c} == null)" for r, c in zip(rows, cells, strict=True)
    )
    agg = {"COLLECT SUM": "sum", "COLLECT MIN": "min", "COLLECT MAX": "max"}[policy]
    return (
        f"(({undecided}) or ({missing_cell})) ? null : "
        f"(({hits}) == 0 ? {default} : {agg}({chosen}))"
    )


def _node(node_id: str, kind: str, content: dict[str, Any], x: int) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": kind,
        "name": node_id,
        "position": {"x": x, "y": 0},
        "content": content,
    }


def _expression_node(node_id: str, exprs: list[tuple[str, str]], x: int) -> dict[str, Any]:
    return _node(
        node_id,
        "expressionNode",
        {
            "expressions": [
                {"id": f"{node_id}-{i}", "key": k, "value": v} for i, (k, v) in enumerate(exprs)
            ],
            "passThrough": True,
            "inputField": None,
            "outputPath": None,
            "executionMode": "single",
        },
        x,
    )


def to_jdm(ruleset: Ruleset, *, inline: bool = True) -> dict[str, Any]:
    """The JDM decision graph deciding ``ruleset`` (raises ``Untranslatable``)."""
    t = _Translator(ruleset, inline=inline)
    t.parameters()
    t.values()
    crits = t.criteria()
    table = ruleset.outputs
    if table is not None and table.hit_policy not in ("UNIQUE", "FIRST"):
        raise Untranslatable(f"outputs table with hit policy {table.hit_policy}")
    rows = []
    for i, r in enumerate(ruleset.rows):
        ref = t.term(r, t._truth_text, f"rows.r{i}")
        if ref != f"$.rows.r{i}":  # computed already (or a constant): the table reads a copy
            t.emit(ref, f"rows.r{i}")
        rows.append(ref)
    cells: list[dict[str, str]] = []
    for row in table.rows if table is not None else ():
        out = {}
        for col in table.columns:  # type: ignore[union-attr]
            cell = row.cells[col.name]
            ref = t.value(cell)
            out[col.name] = ref.replace("$.", "", 1) if ref.startswith("$.") else ref
        cells.append(out)
    default = {}
    if table is not None and table.default is not None:
        for col in table.columns:
            ref = t.value(table.default[col.name])
            default[col.name] = ref.replace("$.", "", 1) if ref.startswith("$.") else ref
    nodes = [_node("input", "inputNode", {}, 0), _expression_node("criteria", t.exprs, 200)]
    edges = [("input", "criteria")]
    last = "criteria"
    columns = [] if table is None else [c.name for c in table.columns]
    if table is not None:
        content = {
            "hitPolicy": "first",
            "inputs": [
                {"id": f"in{i}", "name": f"rule {i + 1}", "field": f"rows.r{i}"}
                for i in range(len(rows))
            ],
            "outputs": [{"id": f"out{c}", "name": c, "field": f"outputs.{c}"} for c in columns],
            "rules": [
                {
                    "_id": f"rule{i}",
                    **{f"in{j}": ("true" if j == i else "") for j in range(len(rows))},
                    **{f"out{c}": cells[i][c] for c in columns},
                }
                for i in range(len(rows))
            ],
            "passThrough": True,
            "inputField": None,
            "outputPath": None,
            "executionMode": "single",
        }
        nodes.append(_node("outputs", "decisionTableNode", content, 400))
        edges.append(("criteria", "outputs"))
        last = "outputs"
    statuses = [k for k in crits]
    docs = {c.id: c.on_fail for c in ruleset.doc.criteria}
    unknown = " or ".join(f'{k} == "UNKNOWN"' for k in statuses) or "false"
    refer = (
        " or ".join(f'{k} == "FAIL"' for k in statuses if docs[k.split(".", 1)[1]] == "refer")
        or "false"
    )
    reject = (
        " or ".join(f'{k} == "FAIL"' for k in statuses if docs[k.split(".", 1)[1]] == "reject")
        or "false"
    )
    if table is None:
        table_ok = "true"
    else:
        hits = " + ".join(f"(rows.r{i} == true ? 1 : 0)" for i in range(len(rows)))
        undecided = " or ".join(f"rows.r{i} == null" for i in range(len(rows))) or "false"
        complete = " and ".join(f"outputs.{c} != null" for c in columns) or "true"
        if table.hit_policy == "UNIQUE":
            status = f"({hits}) == 1 and not ({undecided}) and {complete}"
        else:  # FIRST: the first rule not FALSE is TRUE
            first = "false"
            for i in reversed(range(len(rows))):
                first = f"rows.r{i} == true ? true : (rows.r{i} == null ? false : ({first}))"
            status = f"({first}) and {complete}"
        if table.default is not None:
            raise Untranslatable("outputs table with a default")
        table_ok = status
    outcome = [
        ("decision.referred", f"{unknown} or {refer}"),
        ("decision.rejected", reject),
        ("decision.table_ok", table_ok),
        (
            "outcome",
            '$.decision.referred ? "REFERRED" : ($.decision.rejected ? "REJECTED" : '
            '($.decision.table_ok ? "APPROVED" : "REFERRED"))',
        ),
    ]
    nodes.append(_expression_node("outcome", outcome, 600))
    edges.append((last, "outcome"))
    nodes.append(_node("output", "outputNode", {}, 800))
    edges.append(("outcome", "output"))
    return {
        "contentType": "application/vnd.gorules.decision",
        "nodes": nodes,
        "edges": [
            {"id": f"e{i}", "sourceId": a, "targetId": b, "type": "edge"}
            for i, (a, b) in enumerate(edges)
        ],
        "metadata": {
            "generatedFrom": f"{ruleset.key} {ruleset.content_hash}",
            "generator": "scripts/zen_jdm.py",
        },
    }


def _json_scalar(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, dt.date):
        return json.dumps(v.isoformat())
    return json.dumps(str(v), ensure_ascii=False)


def zen_context(env: Mapping[str, object]) -> str:
    """The facts of one decision as zen's input JSON: ``{"population": {"birth_date": …}}``.

    Dates as ISO text, exact decimals as JSON numbers written digit for digit (zen reads them
    as decimals), missing facts absent. Only the dotted facts: named values and parameters
    are zen's to compute.
    """
    groups: dict[str, list[str]] = {}
    for name, v in env.items():
        head, _, leaf = name.partition(".")
        if not leaf or v is None:
            continue
        groups.setdefault(head, []).append(f"{json.dumps(leaf)}:{_json_scalar(v)}")
    return (
        "{"
        + ",".join(f"{json.dumps(g)}:{{{','.join(items)}}}" for g, items in groups.items())
        + "}"
    )


def zen_decision(result: Mapping[str, Any]) -> tuple[str, dict[str, str], dict[str, object]]:
    """Outcome, criterion statuses and outputs from a zen ``evaluate`` result."""
    out = result["result"]
    return out["outcome"], dict(out.get("criteria") or {}), dict(out.get("outputs") or {})


def main() -> None:
    from engine.ruleset import load_ruleset

    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/zen_jdm.py RULESET.yaml > graph.json")
    ruleset = load_ruleset(Path(sys.argv[1]))
    json.dump(to_jdm(ruleset), sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
