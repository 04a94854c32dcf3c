"""What changed between two versions of a ruleset, in words a policy officer reads."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.errors import ExpressionError
from engine.expr import parse, unparse
from engine.model import DecisionTable, NamedValue, Parameter, RulesetDoc

__all__ = ["diff_rulesets"]


def _expr(text: str | None) -> str:
    """An expression in canonical form, so that only real changes show."""
    if text is None:
        return "true"
    try:
        return unparse(parse(text))
    except ExpressionError:
        return " ".join(text.split())


def _plain(v: object) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_plain(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_plain(x) for x in v) + "]"
    if hasattr(v, "model_dump"):
        return _plain(v.model_dump(mode="json", exclude_none=True, by_alias=True))
    return str(v)


def _section(
    lines: list[str],
    title: str,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    describe: Callable[[Any], str],
    changes: Callable[[Any, Any], list[str]],
) -> None:
    out: list[str] = []
    for key in old:
        if key not in new:
            out.append(f"    - 删除 / removed {key}: {describe(old[key])}")
    for key in new:
        if key not in old:
            out.append(f"    + 新增 / added {key}: {describe(new[key])}")
        else:
            detail = changes(old[key], new[key])
            if detail:
                out.append(f"    ~ 修改 / changed {key}:")
                out.extend(f"        {d}" for d in detail)
    if out:
        lines.append(f"  {title}:")
        lines.extend(out)


def _field(name: str, a: object, b: object) -> list[str]:
    return [] if a == b else [f"{name}: {_plain(a)} → {_plain(b)}"]


def _attributes(a: object, b: object, names: tuple[str, ...]) -> list[str]:
    return [line for n in names for line in _field(n, getattr(a, n), getattr(b, n))]


def _criterion_changes(a: Any, b: Any) -> list[str]:
    return [
        *_field("标题 / title", a.title.zh, b.title.zh),
        *_field("条件 / condition", _expr(a.condition), _expr(b.condition)),
        *_field("不符合时 / on fail", a.on_fail, b.on_fail),
        *_field("法律依据 / legal basis", ", ".join(a.legal_basis), ", ".join(b.legal_basis)),
        *_field("理由 / reason", a.reason.zh, b.reason.zh),
    ]


def _parameter_changes(a: Parameter, b: Parameter) -> list[str]:
    out = _field("类型 / type", a.type, b.type) + _field("单位 / unit", a.unit, b.unit)
    old = {p.from_: p for p in a.values}
    new = {p.from_: p for p in b.values}
    for day in sorted(old.keys() | new.keys()):
        if day not in new:
            out.append(
                f"- 删除 {day} 起的取值 / removed the value from {day}: {_plain(old[day].value)}"
            )
        elif day not in old:
            p = new[day]
            out.append(
                f"+ {day} 起取值 / from {day}: {_plain(p.value)} (依据 / basis "
                f"{', '.join(p.legal_basis)})"
            )
        else:
            out += _field(f"{day} 起取值 / value from {day}", old[day].value, new[day].value)
            out += _field(
                f"{day} 起的依据 / basis from {day}",
                ", ".join(old[day].legal_basis),
                ", ".join(new[day].legal_basis),
            )
    return out


def _value_changes(a: NamedValue, b: NamedValue) -> list[str]:
    out = _field("标题 / title", a.title.zh, b.title.zh)
    if a.expr is not None or b.expr is not None:
        out += _field(
            "表达式 / expression",
            _expr(a.expr) if a.expr else "—",
            _expr(b.expr) if b.expr else "—",
        )
    if a.table is not None and b.table is not None:
        out += _field("命中策略 / hit policy", a.table.hit_policy, b.table.hit_policy)
        out += _rules(
            [(r.when, r.then) for r in a.table.rules], [(r.when, r.then) for r in b.table.rules]
        )
    elif (a.table is None) != (b.table is None):
        out.append("由表达式改为决策表或相反 / changed between an expression and a decision table")
    return out


def _rules(old: list[tuple[str | None, Any]], new: list[tuple[str | None, Any]]) -> list[str]:
    """Rules matched by content, so removing an early rule is reported as that removal."""
    import difflib

    def sig(rule: tuple[str | None, Any]) -> str:
        return f"{_expr(rule[0])} => {_plain(rule[1])}"

    def shown(rule: tuple[str | None, Any]) -> str:
        return f"when {_expr(rule[0])} then {_plain(rule[1])}"

    out = _field("规则数 / rules", len(old), len(new))
    matcher = difflib.SequenceMatcher(a=[sig(r) for r in old], b=[sig(r) for r in new])
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if op == "replace" and i2 - i1 == j2 - j1:
            for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                label = f"规则 {i + 1}" + (f"（现为第 {j + 1} 条）" if i != j else "")
                out += _field(
                    f"{label}条件 / rule {i + 1} when", _expr(old[i][0]), _expr(new[j][0])
                )
                out += _field(f"{label}结果 / rule {i + 1} then", old[i][1], new[j][1])
            continue
        for i in range(i1, i2):
            out.append(f"- 删除规则 / removed rule {i + 1}: {shown(old[i])}")
        for j in range(j1, j2):
            out.append(f"+ 新增规则 / added rule {j + 1}: {shown(new[j])}")
    return out


def _outputs(lines: list[str], a: DecisionTable | None, b: DecisionTable | None) -> None:
    if a is None and b is None:
        return
    if a is None or b is None:
        lines.append(
            "  输出 / outputs: "
            + ("新增输出表 / table added" if a is None else "删除输出表 / table removed")
        )
        return
    out = [
        *_field("命中策略 / hit policy", a.hit_policy, b.hit_policy),
        *_field("输出列 / columns", a.columns, b.columns),
        *_field("法律依据 / legal basis", ", ".join(a.legal_basis), ", ".join(b.legal_basis)),
        *_field("默认值 / default", a.default, b.default),
        *_rules([(r.when, r.then) for r in a.rules], [(r.when, r.then) for r in b.rules]),
    ]
    if out:
        lines.append(f"  输出 / outputs ({b.id}):")
        lines.extend(f"    {d}" for d in out)


def diff_rulesets(old: RulesetDoc, new: RulesetDoc) -> str:
    """A report of every change from ``old`` to ``new``; says so when nothing changed."""
    lines = [f"{new.service}: {old.version} → {new.version}"]
    if old.service != new.service:
        lines.append(f"  事项编码 / service: {old.service} → {new.service}")
    period = [f"{d.effective_from} … {d.effective_to or '（长期 / open）'}" for d in (old, new)]
    for label, a, b in (
        ("生效期间 / effective", period[0], period[1]),
        ("状态 / status", old.status, new.status),
        ("名称 / name", old.name.zh, new.name.zh),
        ("实施机关 / authority", old.authority.zh, new.authority.zh),
        ("格式版本 / schema_version", old.schema_version, new.schema_version),
    ):
        if a != b:
            lines.append(f"  {label}: {a} → {b}")
    _section(
        lines,
        "法律依据 / legal basis",
        {b.id: b for b in old.legal_basis},
        {b.id: b for b in new.legal_basis},
        describe=lambda b: f"《{b.title}》{b.article or ''}",
        changes=lambda a, b: [
            *_field("标题 / title", a.title, b.title),
            *_field("文号 / doc number", a.doc_number, b.doc_number),
            *_field("条款 / article", a.article, b.article),
        ],
    )
    _section(
        lines,
        "申请表 / inputs",
        {f.name: f for f in old.inputs},
        {f.name: f for f in new.inputs},
        describe=lambda f: f"{f.title.zh} ({f.type})",
        changes=lambda a, b: _attributes(
            a, b, ("type", "required", "values", "minimum", "maximum", "pattern", "max_length")
        ),
    )
    _section(
        lines,
        "证据 / evidence",
        {e.id: e for e in old.evidence},
        {e.id: e for e in new.evidence},
        describe=lambda e: f"{e.source} ({e.mode}) {', '.join(e.fields)}",
        changes=lambda a, b: _attributes(
            a, b, ("source", "mode", "key", "params", "fields", "claims")
        ),
    )
    _section(
        lines,
        "查找表 / tables",
        old.tables,
        new.tables,
        describe=lambda t: _plain(t.values),
        changes=lambda a, b: _field("取值 / values", a.values, b.values),
    )
    _section(
        lines,
        "参数 / parameters",
        old.parameters,
        new.parameters,
        describe=lambda p: (
            f"{p.title.zh}: " + "; ".join(f"{v.from_} 起 {_plain(v.value)}" for v in p.values)
        ),
        changes=_parameter_changes,
    )
    _section(
        lines,
        "中间值 / values",
        old.values,
        new.values,
        describe=lambda v: f"{v.title.zh} = {_expr(v.expr) if v.expr else 'decision table'}",
        changes=_value_changes,
    )
    _section(
        lines,
        "条件 / criteria",
        {c.id: c for c in old.criteria},
        {c.id: c for c in new.criteria},
        describe=lambda c: f"{c.title.zh}: {_expr(c.condition)} ({c.on_fail})",
        changes=_criterion_changes,
    )
    _outputs(lines, old.outputs, new.outputs)
    old_tests = [t.name for t in old.tests]
    new_tests = [t.name for t in new.tests]
    if old_tests != new_tests:
        added = [t for t in new_tests if t not in old_tests]
        removed = [t for t in old_tests if t not in new_tests]
        lines.append(
            f"  测试 / tests: {len(old_tests)} → {len(new_tests)}"
            + (f"; 新增 / added {len(added)}" if added else "")
            + (f"; 删除 / removed {len(removed)}" if removed else "")
        )
    if len(lines) == 1:
        lines.append("  无变化 / no change")
    return "\n".join(lines)
