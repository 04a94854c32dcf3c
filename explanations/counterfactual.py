"""Counterfactuals: for each failed criterion, the smallest change of the facts that makes it pass.

``counterfactuals(ruleset, env, evaluation)`` answers "what would have to be different" for
every criterion the evaluation FAILED (in criterion order; PASS and UNKNOWN get none). The
answer is computed from the criterion's condition, never guessed, and every answer offered is
checked: the changes are applied to the facts and the criterion is evaluated again (with the
named values recomputed); only a change set under which it PASSes is returned.

What is solved, and how
-----------------------
* ``x op k`` where ``x`` is a fact (a form field, a registry field, the application date)
  and ``k`` whatever the other side evaluates to: ``required`` is the bound itself for
  ``>=``, ``<=``, ``==`` and ``!=``. ``>`` and ``<`` are written as ``>=``/``<=`` of the next
  value: integer ``k ± 1``, date ``k ± 1 day``; for an exact decimal the next value at the
  finer of the scales of ``k`` and of the current value (``> 90.75`` → ``>= 90.76``), and
  the text says that the rule asks for more than ``k``. An integer fact against a fractional
  bound takes the ceiling / floor. So ``fact op required`` always holds for the new value.
* ``x in [...]`` / ``x in table``: ``op`` ``in`` and ``required`` the allowed list; ``not in``
  the forbidden list. A boolean fact (``not property.owns_housing``) is ``== false``.
* ``and``: the failing conjuncts only, each solved; ``or``: the alternative needing the fewest
  changes, ties to the first written -- except that an alternative reading only facts another
  alternative also reads is a *guard* of it (``k not in t or age < t[k]``, ``degree == "无" or
  …``): leaving the rule's scope is offered only when the guarded alternative needs more
  changes. ``not`` is pushed inward (De Morgan, negated comparisons and memberships).
* Computed terms: named values are expanded into their expressions; ``min``/``max`` against a
  bound become ``and``/``or`` of comparisons; any other term with a changeable input
  (``age_on(population.birth_date, application.date) < 35``, ``floor(si.months / 12) >= 7``,
  ``years_before``, ``days_between``, arithmetic) is solved for one input at a time by a
  search on that input (doubling steps, then bisection) with the engine's own evaluator: for
  the monotone shapes (a single occurrence of the input under ``age_on``, ``days_between``,
  ``years_before/after``, ``year``, ``floor``/``ceil``/``round``, ``min``/``max``, ``+ - * /``,
  unary minus) the result is the exact boundary and ``op`` is ``>=`` or ``<=``; otherwise it
  is the nearest value found and ``op`` is ``==``. The text names the computed term and its
  bound ("即申请日周岁不小于80周岁").
* Decision tables: a lookup ``t[k]`` (a ``tables:`` entry or a dated mapping parameter) is
  solved row by row: each row's key is tried (changing ``k`` if needed) and the comparison
  solved with that row's value; the row needing the fewest changes wins, ties to the current
  row, then the first. A value computed by a decision table (v2 ``values: …: table:``) is
  solved both by making one more rule match (its ``when`` solved) and by moving one input the
  table reads (a rule's condition or cell); when no single change does, by a rule made to
  match plus one input moved. ``table_row`` is that rule (numbered from 1): the rule made to
  match, or the first rule whose outcome the change alters. (``points >= 90.75`` at 90.5
  points: 180 months of contributions instead of 168, rule 1.)
* Otherwise, a requirement on the computed term itself (``fact`` = the expression text,
  ``source`` ``computed``): it cannot be applied to the facts, so it is offered only when
  nothing applicable passes. When nothing at all is found the counterfactual has no changes,
  ``actionable`` False, and its text says which condition must hold (``需满足：…``).

Ranking between candidate change sets: fewest changes; then a guarded alternative before its
guard; then no key/branch change before one (the current table row); then the order written
(alternatives, table rows); then the one the applicant can act on. Searches re-evaluate only
the named values that read a changed fact, and try at most ``_BUDGET`` fact sets per
criterion (a few hundred milliseconds at worst on the shipped rulesets; tens typically).

Actionable
----------
A change is *not* actionable when it concerns (1) the application itself (``application.*``,
``applicant.*``), (2) a personal attribute fixed at birth or death (the fact's name contains
the word ``birth``, ``age``, ``gender``, ``sex``, ``death`` or ``deceased``), (3) a record of
past events (the word ``before``, ``history``, ``previous``, ``convictions``, ``violations``
or ``detentions``), or (4) a date whose required value lies before the application date (a
past fact: a hukou registration or graduation date). Every other change -- a registry count
or status that can change from now on, a declared form value -- is actionable. A
counterfactual is actionable when at least one of its changes is; one with no changes (not
solvable) is not, so that ``actionable`` never claims more than was computed.

Texts are Simplified Chinese first, English second: the criterion's title, then each change
("需社保库记录的缴费月数至少为1个月，当前为0个月"). Facts are named by the form's titles, the
registry catalogue's names (and field titles when the catalogue gives them; else a glossary of
the shipped fields), and the titles of values and parameters; never by identifiers. Values that
identify a person are not repeated.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import itertools
import re
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

from engine import CriterionStatus, Evaluation, Ruleset
from engine._compiled import CheckedValue, typed_json
from engine._semantics import MISSING, compare, names_in, truth, value
from engine.decision import JsonScalar, JsonValue, json_value, prepare_env
from engine.errors import RulesetInvalid
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
from engine.registries import (
    Claim,
    FieldSpec,
    RegistryCatalogue,
    find_catalogue,
    load_catalogue,
)
from engine.tables import decide_table
from explanations.record import Change, ChangeOp, Counterfactual, is_personal_field
from explanations.render import format_amount

__all__ = ["Change", "ChangeOp", "Counterfactual", "counterfactuals"]


def counterfactuals(
    ruleset: Ruleset,
    env: Mapping[str, object],
    evaluation: Evaluation,
    *,
    registries: RegistryCatalogue | None = None,
) -> list[Counterfactual]:
    """One counterfactual per FAILED criterion of ``evaluation``, in criterion order.

    ``env`` holds the facts the evaluation was made on (as ``engine.application_env`` builds
    them). ``registries`` names the registries in the texts; without it the catalogue beside
    the ruleset's file is read (once per file), and without that a generic name is used.
    Never raises: a criterion that cannot be solved gets a counterfactual without changes.
    """
    catalogue = registries if registries is not None else _catalogue_near(ruleset.path)
    failed = {c.id for c in evaluation.criteria if c.status is CriterionStatus.FAIL}
    if not failed:
        return []
    docs = ruleset.doc.criteria
    solver: _Solver | None = None
    out: list[Counterfactual] = []
    for crit in ruleset.criteria:
        doc = docs[crit.index]
        if doc.id not in failed:
            continue
        try:
            if solver is None:
                solver = _Solver(ruleset, env, catalogue)
            out.append(solver.counterfactual(doc.id, crit.condition))
        except Exception:  # the promise is "never raises": an engine surprise is not solved
            out.append(_unsolved(doc.id, doc.title.zh, doc.title.en, None))
    return out


# --- the catalogue ----------------------------------------------------------------------


@functools.cache
def _catalogue_at(path: str) -> RegistryCatalogue | None:
    try:
        return load_catalogue(path)
    except RulesetInvalid:
        return None


def _catalogue_near(ruleset_path: str) -> RegistryCatalogue | None:
    """The registry catalogue beside (or above) the ruleset's file, if it is a file."""
    p = Path(ruleset_path)
    if not p.is_file():
        return None
    found = find_catalogue(p)
    return _catalogue_at(str(found.resolve())) if found is not None else None


# --- candidate change sets --------------------------------------------------------------


@dataclass(frozen=True)
class _Change:
    fact: str
    op: str
    required: object
    """A value, or a tuple of values for ``in`` / ``not in``."""
    witness: object
    """The value set when checking: ``required``, a member for ``in``, a non-member for
    ``not in`` and ``!=``."""
    term: Expr | None = None
    """The compared term when this is an input solved through it (or the computed term)."""
    term_op: str | None = None
    bound: object = MISSING
    other: str | None = None
    """The fact on the other side of ``==``, when the required value is that fact's."""
    strict: object = None
    """The bound of a strict decimal comparison (``> 90.75``), for the text."""
    computed: bool = False


@dataclass(frozen=True)
class _Option:
    changes: tuple[_Change, ...] = ()
    table_row: int | None = None
    table: str | None = None
    guard: int = 0
    diffs: int = 0
    position: tuple[int, ...] = ()

    @property
    def computed(self) -> int:
        return sum(c.computed for c in self.changes)


_NEGATED = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
_FLIPPED = {"==": "==", "!=": "!=", "<": ">", ">": "<", "<=": ">=", ">=": "<="}
_KEEP = 6
_MAX_DEPTH = 14
_INT_SPAN = 30
"""Searches on an integer or decimal input go up to 2**30 steps from the current value."""
_DATE_SPAN = 17
"""Searches on a date go up to 2**17 days (about 360 years)."""
_BUDGET = 20_000
"""Fact sets tried per criterion (each a re-evaluation of about 0.1 ms)."""
_EVAL_ERRORS = (TypeError, ValueError, ArithmeticError, KeyError, AttributeError)
_MONOTONE_CALLS = frozenset(
    {"age_on", "days_between", "years_before", "years_after", "year", "floor", "ceil", "round"}
)
_FIXED_WORDS = frozenset({"birth", "age", "gender", "sex", "death", "deceased"})
_PAST_WORDS = frozenset(
    {"before", "history", "previous", "previously", "convictions", "violations", "detentions"}
)


def _lit(v: object) -> Literal:
    return Literal(v, 0)  # type: ignore[arg-type]


def _children(node: Expr) -> Iterator[Expr]:
    """The sub-expressions a change can reach: unlike ``engine.expr.children``, not the table
    of a lookup nor a named list searched by ``in`` (ruleset data, never the applicant's)."""
    match node:
        case Call(args=items) | ListLit(items=items) | And(items=items) | Or(items=items):
            yield from items
        case Index(key=k):
            yield k
        case Arith(left=l, right=r) | Compare(left=l, right=r):
            yield l
            yield r
        case Neg(operand=o) | Not(operand=o):
            yield o
        case In(needle=n, haystack=h):
            yield n
            if not isinstance(h, Name):
                yield h
        case If(cond=c, then=t, orelse=e):
            yield c
            yield t
            yield e


def _rebuild(node: Expr, f: Callable[[Expr], Expr]) -> Expr:
    """``node`` with ``f`` applied to each child expression (``node`` itself when none changes,
    so that sub-expressions keep their identity)."""
    old = list(_children(node))
    new = [f(c) for c in old]
    if all(a is b for a, b in zip(old, new, strict=True)):
        return node
    match node:
        case Call():
            return replace(node, args=tuple(new))
        case ListLit() | And() | Or():
            return replace(node, items=tuple(new))
        case Index():
            return replace(node, key=new[0])
        case Arith() | Compare():
            return replace(node, left=new[0], right=new[1])
        case Neg() | Not():
            return replace(node, operand=new[0])
        case In(haystack=h):
            return replace(node, needle=new[0], haystack=h if isinstance(h, Name) else new[1])
        case If():
            return replace(node, cond=new[0], then=new[1], orelse=new[2])
    return node


def _walk(node: Expr) -> Iterator[Expr]:
    yield node
    for child in _children(node):
        yield from _walk(child)


def _substitute(node: Expr, target: Expr, new: Expr) -> Expr:
    """``node`` with the sub-expression ``target`` (by identity) replaced by ``new``."""
    if node is target:
        return new
    return _rebuild(node, lambda child: _substitute(child, target, new))


def _satisfies(v: object, op: str, required: object) -> bool:
    try:
        if op in ("in", "not in"):
            found = isinstance(required, tuple | list) and v in required
            return found if op == "in" else not found
        return compare(op, v, required)
    except _EVAL_ERRORS:
        return False


def _merge(parts: Sequence[_Option]) -> _Option | None:
    """The union of several change sets; ``None`` when two changes of one fact conflict."""
    changes: list[_Change] = []
    for part in parts:
        for c in part.changes:
            same = next((i for i, d in enumerate(changes) if d.fact == c.fact), None)
            if same is None:
                changes.append(c)
                continue
            d = changes[same]
            if d.computed or c.computed:
                if d != c:
                    return None
            elif _satisfies(d.witness, c.op, c.required):
                pass
            elif _satisfies(c.witness, d.op, d.required):
                changes[same] = c
            else:
                return None
    row = next((p for p in parts if p.table_row is not None), None)
    return _Option(
        changes=tuple(changes),
        table_row=row.table_row if row else None,
        table=row.table if row else None,
        guard=sum(p.guard for p in parts),
        diffs=sum(p.diffs for p in parts),
        position=tuple(itertools.chain.from_iterable(p.position for p in parts)),
    )


def _step(bound: int | Decimal, current: object) -> Decimal:
    """The smallest step at the scale of the bound (or of the current value if finer)."""
    exps = [0]
    for v in (bound, current):
        if isinstance(v, Decimal) and v.is_finite():
            exp = v.as_tuple().exponent
            if isinstance(exp, int):
                exps.append(exp)
    return Decimal(1).scaleb(min(exps))


def _day_at(origin: dt.date, n: int) -> object:
    try:
        return origin + dt.timedelta(days=n)
    except OverflowError:
        return MISSING


def _int_at(origin: int, n: int) -> object:
    return origin + n


def _dec_at(origin: Decimal, step: Decimal, n: int) -> object:
    return origin + step * n


def _type_of(v: object) -> str | None:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, Decimal):
        return "number"
    if isinstance(v, dt.date):
        return "date"
    if isinstance(v, str):
        return "string"
    return None


def _normalise(
    op: str, bound: object, typ: str | None, current: object
) -> tuple[str, object, object] | None:
    """``(op, required, strict bound)`` for ``x op bound`` on a fact of type ``typ``."""
    if typ == "boolean" or isinstance(bound, bool):
        if op == "==":
            return "==", bound, None
        if op == "!=" and isinstance(bound, bool):
            return "==", not bound, None
        return None
    if typ == "integer" and isinstance(bound, Decimal):
        if bound == bound.to_integral_value():
            bound = int(bound)
        elif op in (">", ">="):
            return ">=", int(bound.to_integral_value(decimal.ROUND_CEILING)), None
        elif op in ("<", "<="):
            return "<=", int(bound.to_integral_value(decimal.ROUND_FLOOR)), None
        elif op == "==":
            return None
        else:
            return "!=", bound, None
    if isinstance(bound, dt.date):
        try:
            if op == ">":
                return ">=", bound + dt.timedelta(days=1), None
            if op == "<":
                return "<=", bound - dt.timedelta(days=1), None
        except OverflowError:
            return None
        return op, bound, None
    if isinstance(bound, int) and typ != "number" and not isinstance(current, Decimal):
        if op == ">":
            return ">=", bound + 1, None
        if op == "<":
            return "<=", bound - 1, None
        return op, bound, None
    if isinstance(bound, int | Decimal) and op in (">", "<"):
        d = Decimal(bound)
        step = _step(bound, current)
        return (">=", d + step, bound) if op == ">" else ("<=", d - step, bound)
    if isinstance(bound, str) and op in (">", "<"):
        return None
    return op, bound, None


class _Solver:
    """Solves the conditions of one ruleset for one application's facts."""

    def __init__(
        self, ruleset: Ruleset, env: Mapping[str, object], catalogue: RegistryCatalogue | None
    ) -> None:
        self.rs = ruleset
        derived = {p.name for p in ruleset.parameters} | {v.name for v in ruleset.values}
        self.base: dict[str, object] = {k: v for k, v in env.items() if k not in derived}
        prepared = prepare_env(ruleset, self.base)
        self.env = prepared.env
        self.tables = prepared.tables
        self.types = ruleset.names
        self.sources = ruleset.sources
        self.values: dict[str, CheckedValue] = {v.name: v for v in ruleset.values}
        self.words = _Words(ruleset, catalogue, self)
        self.probes = 0
        self.ages = ruleset.recording.age_fields
        """Facts the record keeps only as an age: never solved for (nor the application date
        beside them), which would put the date back in the record."""

    # --- evaluation -----------------------------------------------------------------

    def now(self, node: Expr) -> bool | None:
        try:
            return truth(node, self.env, self.tables)
        except _EVAL_ERRORS:
            return None

    def val(self, node: Expr) -> object:
        try:
            return value(node, self.env, self.tables)
        except _EVAL_ERRORS:
            return MISSING

    def holds(self, node: Expr, overrides: Mapping[str, object], *, exact: bool = False) -> bool:
        """Whether ``node`` is TRUE once the facts in ``overrides`` are changed.

        The search recomputes only the named values that read a changed fact; ``exact`` runs
        the engine's own preparation of every parameter and value, as a decision does (the
        check every returned counterfactual passes). Each criterion may try at most
        ``_BUDGET`` fact sets, which bounds the time a hard criterion takes.
        """
        self.probes += 1
        if self.probes > _BUDGET and not exact:
            return False
        try:
            if exact or "application.date" in overrides:  # dated parameters may change
                prepared = prepare_env(self.rs, {**self.base, **overrides})
                env, tables = prepared.env, prepared.tables
            else:
                env, tables = self.with_facts(overrides), self.tables
            return truth(node, env, tables) is True
        except _EVAL_ERRORS:
            return False

    def with_facts(self, overrides: Mapping[str, object]) -> dict[str, object]:
        """The prepared facts with ``overrides`` applied and the values that read them
        recomputed, in the ruleset's order (as ``engine.decision.prepare_env`` computes them)."""
        env = dict(self.env)
        env.update(overrides)
        changed = set(overrides)
        for named in self.rs.values:
            if changed.isdisjoint(named.inputs):
                continue
            v = self.value_of(named, env)
            if v is MISSING or v is None:
                env.pop(named.name, None)
            else:
                env[named.name] = v
            changed.add(named.name)
        return env

    def value_of(self, named: CheckedValue, env: Mapping[str, object]) -> object:
        if named.expr is not None:
            return value(named.expr, env, self.tables)
        table = named.table
        assert table is not None
        tables = self.tables
        defaults = table.default

        def default(col: str) -> object:
            assert defaults is not None
            return value(defaults[col], env, tables)

        res = decide_table(
            table,
            [True if r.when is None else truth(r.when, env, tables) for r in table.rows],
            lambda row, col: value(row.cells[col], env, tables),
            default if defaults else None,
        )
        if res.status == "ok" and res.outputs is not None:
            return res.outputs[named.name]
        return MISSING

    def overrides(self, option: _Option) -> dict[str, object] | None:
        if option.computed:
            return None
        return {c.fact: c.witness for c in option.changes}

    # --- facts ----------------------------------------------------------------------

    def changeable(self, name: str) -> bool:
        source = self.sources.get(name)
        if source is None or name not in self.types:
            return False
        return source == "declared" or source.startswith("registry:") or name == "application.date"

    def is_fact(self, name: str) -> bool:
        source = self.sources.get(name, "")
        return source in ("declared", "application") or source.startswith("registry:")

    def inline(self, node: Expr, depth: int = 0) -> Expr:
        """``node`` with every named value computed by an expression replaced by it."""
        if depth > _MAX_DEPTH:
            return node
        if isinstance(node, Name):
            named = self.values.get(node.dotted)
            if named is not None and named.expr is not None:
                return self.inline(named.expr, depth + 1)
            return node
        return _rebuild(node, lambda child: self.inline(child, depth))

    def table_exprs(self, named: CheckedValue) -> list[Expr]:
        table = named.table
        if table is None:
            return []
        exprs: list[Expr] = []
        for row in table.rows:
            if row.when is not None:
                exprs.append(row.when)
            exprs.extend(row.cells.values())
        exprs.extend((table.default or {}).values())
        return exprs

    def inputs(self, node: Expr) -> list[str]:
        """The changeable facts ``node`` reads (through named values too), in order of
        appearance, the application date last."""
        found: list[str] = []
        seen: set[str] = set()
        for n in names_in(node):
            self._visit(n, 0, seen, found)
        return sorted(found, key=lambda n: n.startswith("application."))

    def _visit(self, name: str, depth: int, seen: set[str], found: list[str]) -> None:
        """``inputs``' walk: a method, not a closure, since a closure that calls itself is a
        reference cycle that only the garbage collector frees (every adverse decision)."""
        if depth > _MAX_DEPTH or name in seen:
            return
        seen.add(name)
        if self.changeable(name):
            found.append(name)
            return
        named = self.values.get(name)
        if named is None:
            return
        exprs = [named.expr] if named.expr is not None else self.table_exprs(named)
        for e in exprs:
            for n in names_in(e):
                self._visit(n, depth + 1, seen, found)

    def monotone(self, node: Expr, fact: str) -> bool:
        """Whether ``node`` is monotone in ``fact`` (which it reads once, through the shapes
        listed in the module docstring)."""
        if sum(1 for n in names_in(node) if n == fact) != 1:
            return False

        def go(n: Expr) -> bool:
            if not any(x == fact for x in names_in(n)):
                return True
            match n:
                case Name():
                    return n.dotted == fact
                case Call(func=f, args=args):
                    if f not in _MONOTONE_CALLS and f not in ("min", "max"):
                        return False
                    return all(go(a) for a in args)
                case Arith(op=op, left=l, right=r):
                    if op in ("*", "/") and all(fact in names_in(x) for x in (l, r)):
                        return False
                    return go(l) and go(r)
                case Neg(operand=o):
                    return go(o)
            return False

        return go(node)

    # --- solving --------------------------------------------------------------------

    def key(self, option: _Option) -> tuple[object, ...]:
        idle = sum(not self.can_change(c) for c in option.changes)
        return (
            option.computed,
            len(option.changes),
            option.guard,
            option.diffs,
            option.position,
            idle,
        )

    def ranked(self, options: list[_Option]) -> list[_Option]:
        unique: dict[tuple[object, ...], _Option] = {}
        for o in sorted(options, key=self.key):
            sig = tuple((c.fact, c.op, repr(c.required)) for c in o.changes)
            unique.setdefault(sig, o)
        return list(unique.values())

    def options(self, node: Expr, want: bool, depth: int = 0) -> list[_Option]:
        """Change sets (best first) under which ``node``'s truth becomes ``want``."""
        if depth > _MAX_DEPTH:
            return []
        if self.now(node) is want:
            return [_Option()]
        match node:
            case Not(operand=o):
                return self.options(o, not want, depth + 1)
            case And(items=items):
                if want:
                    return self.conjunction(items, want, depth)
                return self.alternatives(items, want, depth)
            case Or(items=items):
                if want:
                    return self.alternatives(items, want, depth)
                return self.conjunction(items, want, depth)
            case Compare(op=op, left=l, right=r):
                return self.compare(op if want else _NEGATED[op], l, r, depth)
            case In(needle=n, haystack=h, negated=neg):
                return self.member(n, h, neg != want, depth)
            case Literal():
                return []
        return self.compare("==", node, _lit(want), depth)

    def conjunction(self, items: Sequence[Expr], want: bool, depth: int) -> list[_Option]:
        pending = [i for i in items if self.now(i) is not want]
        top = 3 if len(pending) <= 3 else 2 if len(pending) <= 5 else 1
        per: list[list[_Option]] = []
        for item in pending:
            found = self.options(item, want, depth + 1)[:top]
            if not found:
                return []
            per.append(found)
        merged = [m for combo in itertools.product(*per) if (m := _merge(combo)) is not None]
        return self.ranked(merged)[:_KEEP]

    def alternatives(self, items: Sequence[Expr], want: bool, depth: int) -> list[_Option]:
        reads = [set(self.inputs(i)) for i in items]
        out: list[_Option] = []
        for i, item in enumerate(items):
            guard = int(
                bool(reads[i]) and any(j != i and reads[i] < reads[j] for j in range(len(items)))
            )
            for o in self.options(item, want, depth + 1)[:_KEEP]:
                out.append(replace(o, guard=o.guard + guard, position=(i, *o.position)))
        return self.ranked(out)[:_KEEP]

    def compare(self, op: str, left: Expr, right: Expr, depth: int) -> list[_Option]:
        left, right = self.inline(left), self.inline(right)
        point = self.choice_point(left) or self.choice_point(right)
        if point is not None:
            return self.choose(op, left, right, point, depth)
        for term, term_op, other in self.sides(op, left, right):
            found = self.solve_side(term, term_op, other, depth)
            if found:
                return found
        node = Compare(op, left, right, 0)
        found = self.search(node, self.inputs(node))
        return found or self.computed(op, left, right)

    def choice_point(self, node: Expr) -> Index | If | None:
        for n in _walk(node):
            if isinstance(n, Index) and n.table.dotted in self.tables:
                return n
            if isinstance(n, If):
                return n
        return None

    def choose(
        self, op: str, left: Expr, right: Expr, point: Index | If, depth: int
    ) -> list[_Option]:
        """Solve a comparison through a table lookup (row by row) or an ``if`` (by branch)."""
        out: list[_Option] = []
        if isinstance(point, Index):
            table = self.tables.get(point.table.dotted) or {}
            current = self.val(point.key)
            for j, (k, v) in enumerate(table.items()):
                here = current is not MISSING and str(current) == k
                keyed = (
                    [_Option()]
                    if here
                    else self.options(Compare("==", point.key, _lit(k), 0), True, depth + 1)
                )
                for o in self.combine(keyed, op, left, right, point, _lit(v), depth):
                    out.append(
                        replace(
                            o,
                            table_row=j + 1,
                            table=point.table.dotted,
                            diffs=o.diffs + (not here),
                            position=(j,),
                        )
                    )
        else:
            branches = ((point.then, True), (point.orelse, False))
            for b, (branch, cond_want) in enumerate(branches):
                here = self.now(point.cond) is cond_want
                keyed = self.options(point.cond, cond_want, depth + 1)
                for o in self.combine(keyed, op, left, right, point, branch, depth):
                    out.append(replace(o, diffs=o.diffs + (not here), position=(b, *o.position)))
        return self.ranked(out)[:_KEEP]

    def combine(
        self,
        keyed: list[_Option],
        op: str,
        left: Expr,
        right: Expr,
        point: Expr,
        new: Expr,
        depth: int,
    ) -> list[_Option]:
        """Each way to reach a row or branch, with each way to pass once it is reached."""
        keyed = [o for o in keyed if not o.computed][:3]
        if not keyed:
            return []
        node = Compare(op, _substitute(left, point, new), _substitute(right, point, new), 0)
        rest = [o for o in self.options(node, True, depth + 1) if not o.computed][:3]
        return [m for ko, ro in itertools.product(keyed, rest) if (m := _merge((ko, ro)))]

    def sides(self, op: str, left: Expr, right: Expr) -> list[tuple[Expr, str, Expr]]:
        """The sides to change, in order of preference, each with its op and the other side."""
        order: list[tuple[Expr, str, Expr]] = []
        if self.inputs(left):
            order.append((left, op, right))
        if self.inputs(right):
            order.append((right, _FLIPPED[op], left))
        if (
            len(order) == 2
            and op in ("==", "!=")
            and self.declared(right)
            and not self.declared(left)
        ):
            order.reverse()  # a declaration is corrected to match the registry, not the reverse
        return sorted(
            order, key=lambda s: all(n.startswith("application.") for n in self.inputs(s[0]))
        )

    def declared(self, node: Expr) -> bool:
        names = list(names_in(node))
        return bool(names) and all(self.sources.get(n) == "declared" for n in names)

    def solve_side(self, term: Expr, op: str, other: Expr, depth: int) -> list[_Option]:
        bound = self.val(other)
        if bound is MISSING:
            return []
        if isinstance(term, Name):
            name = term.dotted
            if self.changeable(name):
                return self.direct(name, op, bound, other)
            named = self.values.get(name)
            if named is not None and named.table is not None:
                return self.table_value(term, named, op, other)
            return []
        if isinstance(term, Call) and term.func in ("min", "max") and op in ("<", "<=", ">", ">="):
            parts = tuple(Compare(op, a, _lit(bound), 0) for a in term.args)
            every = (term.func == "min") == (op in (">", ">="))
            return self.options(And(parts, 0) if every else Or(parts, 0), True, depth + 1)
        return self.search(Compare(op, term, other, 0), self.inputs(term), term, op, bound)

    def direct(self, fact: str, op: str, bound: object, other: Expr) -> list[_Option]:
        current = self.base.get(fact, MISSING)
        norm = _normalise(op, bound, self.types.get(fact), current)
        if norm is None:
            return []
        new_op, required, strict = norm
        witness = self.other_than(fact, [required]) if new_op == "!=" else required
        if witness is MISSING:
            return []
        other_fact = (
            other.dotted if isinstance(other, Name) and self.is_fact(other.dotted) else None
        )
        change = _Change(fact, new_op, required, witness, other=other_fact, strict=strict)
        return [_Option((change,))]

    def member(self, needle: Expr, hay: Expr, need_in: bool, depth: int) -> list[_Option]:
        if isinstance(hay, ListLit):
            allowed = [value(i, self.env, self.tables) for i in hay.items]
        elif isinstance(hay, Name):
            allowed = list(self.tables.get(hay.dotted, {}))
        else:
            return []
        needle = self.inline(needle)
        if isinstance(needle, Name) and self.changeable(needle.dotted):
            fact = needle.dotted
            typed = self.types.get(fact)
            if isinstance(hay, Name) and typed not in (None, "string"):
                return []
            if need_in:
                change = _Change(fact, "in", tuple(allowed), allowed[0] if allowed else MISSING)
            else:
                change = _Change(fact, "not in", tuple(allowed), self.other_than(fact, allowed))
            return [] if change.witness is MISSING else [_Option((change,))]
        node = In(needle, hay, not need_in, 0)
        found = self.search(node, self.inputs(needle))
        if found:
            return found
        current = self.val(needle)
        if current is MISSING or not allowed or not self.inputs(needle):
            return []
        change = _Change(
            unparse(needle),
            "in" if need_in else "not in",
            tuple(allowed),
            None,
            term=needle,
            computed=True,
        )
        return [_Option((change,))]

    def computed(self, op: str, left: Expr, right: Expr) -> list[_Option]:
        """A requirement on a computed term (it cannot be applied to the facts)."""
        term, term_op, other = left, op, right
        if not self.inputs(left):
            if not self.inputs(right):
                return []  # nothing the facts could change: not solvable
            term, term_op, other = right, _FLIPPED[op], left
        bound, current = self.val(other), self.val(term)
        if bound is MISSING or current is MISSING:
            return []
        norm = _normalise(term_op, bound, _type_of(current), current)
        if norm is None:
            return []
        new_op, required, strict = norm
        change = _Change(
            unparse(term), new_op, required, None, term=term, strict=strict, computed=True
        )
        return [_Option((change,))]

    def search(
        self,
        node: Expr,
        facts: Sequence[str],
        term: Expr | None = None,
        term_op: str | None = None,
        bound: object = MISSING,
        *,
        given: Mapping[str, object] | None = None,
        first: bool = False,
    ) -> list[_Option]:
        """For each input in turn, the nearest value of it alone that makes ``node`` TRUE (with
        the facts in ``given`` already changed); with ``first``, only the first input that
        can."""
        given = given or {}
        out: list[_Option] = []
        if self.ages.intersection(facts):
            facts = [f for f in facts if f not in self.ages and f != "application.date"]
        for i, fact in enumerate(facts):
            if fact in given:
                continue
            current = self.base.get(fact, MISSING)
            found = self.nearest(
                fact,
                current,
                lambda v, fact=fact: self.holds(node, {**given, fact: v}),  # type: ignore[misc]
            )
            if found is MISSING:
                continue
            op = "=="
            typed = self.types.get(fact)
            if (
                typed in ("integer", "number", "date")
                and current is not MISSING
                and term is not None
                and self.monotone(term, fact)
            ):
                op = ">=" if found > current else "<="  # type: ignore[operator]
            change = _Change(fact, op, found, found, term=term, term_op=term_op, bound=bound)
            out.append(_Option((change,), position=(i,)))
            if first:
                break
        return out

    def nearest(self, fact: str, current: object, passes: Callable[[object], bool]) -> object:
        """The value of ``fact`` nearest ``current`` for which ``passes`` holds."""
        typed = self.types.get(fact)
        if typed in ("integer", "number", "date"):
            return self.bisect(typed, current, passes)
        if typed == "boolean":
            candidates: list[object] = [not current] if isinstance(current, bool) else [True, False]
        elif typed == "string":
            candidates = [s for s in self.string_pool(fact) if s != current]
        else:
            return MISSING
        return next((c for c in candidates if passes(c)), MISSING)

    def bisect(self, typed: str, current: object, passes: Callable[[object], bool]) -> object:
        """Doubling steps away from the current value in both directions, then bisection."""
        origin: object
        at: Callable[[int], object]
        if typed == "date":
            day = self.base.get("application.date")
            start = current if isinstance(current, dt.date) else day
            if not isinstance(start, dt.date):
                return MISSING
            origin, at, span = start, functools.partial(_day_at, start), _DATE_SPAN
        elif typed == "integer":
            start_int = current if isinstance(current, int) and not isinstance(current, bool) else 0
            origin, at, span = start_int, functools.partial(_int_at, start_int), _INT_SPAN
        else:
            start_dec = Decimal(current) if isinstance(current, Decimal | int) else Decimal(0)
            step = _step(start_dec, start_dec)
            origin, at, span = start_dec, functools.partial(_dec_at, start_dec, step), _INT_SPAN
        if current is MISSING and passes(origin):
            return origin
        best: tuple[int, int] | None = None
        for sign in (1, -1):
            last_fail, hit, k = 0, None, 1
            while k <= 2**span:
                v = at(sign * k)
                if v is MISSING:
                    break
                if passes(v):
                    hit = k
                    break
                last_fail, k = k, k * 2
            if hit is None:
                continue
            lo, hi = last_fail, hit
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if passes(at(sign * mid)):
                    hi = mid
                else:
                    lo = mid
            if best is None or hi < best[0]:
                best = (hi, sign)
        return MISSING if best is None else at(best[1] * best[0])

    def table_value(self, term: Name, named: CheckedValue, op: str, other: Expr) -> list[_Option]:
        """A comparison on a value a decision table computes: make one more rule match, or
        move one input the table reads."""
        table = named.table
        assert table is not None
        node = Compare(op, term, other, 0)
        out: list[_Option] = []
        bound = self.val(other)
        inputs = self.inputs(term)
        reached: list[tuple[int, _Option]] = []
        for j, row in enumerate(table.rows):
            if row.when is None or self.now(row.when) is True:
                continue
            for o in self.options(row.when, True, 1)[:3]:
                over = self.overrides(o)
                if not over:
                    continue
                tagged = replace(o, table_row=j + 1, table=named.name, position=(j + 1,))
                if self.holds(node, over):
                    out.append(tagged)
                else:
                    reached.append((j, tagged))
        before = self.rule_states(named, {})
        for o in self.search(node, inputs, term, op, bound):
            over = self.overrides(o) or {}
            after = self.rule_states(named, over)
            rule = next(
                (j + 1 for j, (a, b) in enumerate(zip(before, after, strict=True)) if a != b), None
            )
            out.append(
                replace(o, table_row=rule, table=named.name, position=(rule or len(before) + 1,))
            )
        if not out:  # no single change: a rule made to match, and one input moved on top
            for j, o in reached:
                given = self.overrides(o) or {}
                for more in self.search(node, inputs, term, op, bound, given=given, first=True):
                    merged = _merge((o, more))
                    if merged is not None:
                        out.append(replace(merged, table_row=j + 1, position=(j + 1,)))
        return self.ranked(out)[:_KEEP]

    def rule_states(
        self, named: CheckedValue, overrides: Mapping[str, object]
    ) -> list[tuple[object, object]]:
        """Each rule of a value's table: whether it matches and what it gives."""
        assert named.table is not None
        env = dict(self.base)
        env.update(overrides)
        try:
            prepared = prepare_env(self.rs, env)
        except _EVAL_ERRORS:
            return [(None, None)] * len(named.table.rows)
        states: list[tuple[object, object]] = []
        for row in named.table.rows:
            matches = True if row.when is None else truth(row.when, prepared.env, prepared.tables)
            cell = next(iter(row.cells.values()), None)
            out = (
                value(cell, prepared.env, prepared.tables) if cell is not None and matches else None
            )
            states.append((matches, out))
        return states

    # --- fitting values ---------------------------------------------------------------

    @functools.cached_property
    def compared_strings(self) -> dict[str, list[str]]:
        """For each fact, the string constants the ruleset compares it with (``==``, ``!=``,
        ``in [...]``) and the keys of the tables it looks up or is tested against.

        The same for every application whose tables in force have the same keys: kept in
        the ruleset's memo under those keys (~0.1 ms a solver that needs it otherwise)."""
        key = ("compared_strings", tuple((n, tuple(t)) for n, t in self.tables.items()))
        found = self.rs.memo.get(key)
        if found is None:
            found = self.rs.memo[key] = self._compared_strings()
        return found  # type: ignore[return-value]

    def _compared_strings(self) -> dict[str, list[str]]:
        exprs: list[Expr] = [c.condition for c in self.rs.criteria]
        for named in self.rs.values:
            exprs.extend([named.expr] if named.expr is not None else self.table_exprs(named))
        exprs.extend(self.rs.rows)
        found: dict[str, dict[str, None]] = {}

        def add(side: Expr, strings: Sequence[object]) -> None:
            for name in names_in(self.inline(side)):
                bucket = found.setdefault(name, {})
                bucket.update(dict.fromkeys(str(v) for v in strings if isinstance(v, str)))

        for e in exprs:
            for n in _walk(e):
                match n:
                    case Compare(op="==" | "!=", left=l, right=Literal(value=str() as v)):
                        add(l, [v])
                    case Compare(op="==" | "!=", left=Literal(value=str() as v), right=r):
                        add(r, [v])
                    case In(needle=needle, haystack=ListLit(items=items)):
                        add(needle, [i.value for i in items if isinstance(i, Literal)])
                    case In(needle=needle, haystack=Name() as t) | Index(table=t, key=needle):
                        add(needle, list(self.tables.get(t.dotted, {})))
        return {k: list(v) for k, v in found.items()}

    def string_pool(self, fact: str) -> list[str]:
        """The values worth trying for a string fact: its form choices and what it is
        compared with."""
        pool: dict[str, None] = {}
        if fact.startswith("form."):
            field = fact.split(".", 1)[1]
            spec = next((f for f in self.rs.doc.inputs if f.name == field), None)
            if spec is not None and spec.values:
                pool.update(dict.fromkeys(spec.values))
        pool.update(dict.fromkeys(self.compared_strings.get(fact, [])))
        return list(pool)

    def other_than(self, fact: str, forbidden: Sequence[object]) -> object:
        """A value of ``fact``'s type outside ``forbidden`` (to check ``!=`` and ``not in``)."""
        typed = self.types.get(fact)
        current = self.base.get(fact, MISSING)
        candidates: list[object]
        if typed == "boolean":
            candidates = [True, False]
        elif typed == "integer":
            ints = [
                v for v in [*forbidden, current] if isinstance(v, int) and not isinstance(v, bool)
            ]
            candidates = [max(ints, default=0) + 1, min(ints, default=0) - 1]
        elif typed == "number":
            nums = [
                Decimal(v)
                for v in [*forbidden, current]
                if isinstance(v, int | Decimal) and not isinstance(v, bool)
            ]
            candidates = [max(nums, default=Decimal(0)) + 1]
        elif typed == "date":
            days = [v for v in [*forbidden, current] if isinstance(v, dt.date)]
            candidates = [max(days) + dt.timedelta(days=1)] if days else []
        else:
            candidates = [*self.string_pool(fact), "（其他）"]
        return next((c for c in candidates if c not in forbidden), MISSING)

    # --- the counterfactual --------------------------------------------------------------

    def can_change(self, change: _Change) -> bool:
        """The actionable rule of the module docstring, for one change."""
        if change.computed:
            return change.term is not None and any(
                self.can_change_fact(f, None) for f in self.inputs(change.term)
            )
        return self.can_change_fact(change.fact, change.required)

    def can_change_fact(self, fact: str, required: object) -> bool:
        if fact.startswith(("application.", "applicant.")):
            return False
        words = set(re.split(r"[._]", fact.lower()))
        if words & (_FIXED_WORDS | _PAST_WORDS):
            return False
        if self.types.get(fact) == "date":
            day = self.base.get("application.date")
            if not isinstance(required, dt.date) or not isinstance(day, dt.date):
                return False
            return required >= day
        return True

    def counterfactual(self, criterion: str, condition: Expr) -> Counterfactual:
        doc = next(c for c in self.rs.doc.criteria if c.id == criterion)
        self.probes = 0
        chosen: _Option | None = None
        fallback: _Option | None = None
        for tried, option in enumerate(self.options(condition, True)):
            if tried >= 30:
                break
            if not option.changes:
                continue
            over = self.overrides(option)
            if over is None:
                fallback = fallback or option
            elif self.holds(condition, over, exact=True):
                chosen = option
                break
        chosen = chosen or fallback
        if chosen is None:
            return _unsolved(criterion, doc.title.zh, doc.title.en, self.words.condition(condition))
        changes = [
            Change(
                fact=c.fact,
                source="computed" if c.computed else self.sources.get(c.fact),
                current=self.current_json(c),
                required=_required_json(c, self.type_of(c)),
                op=c.op,  # type: ignore[arg-type]
            )
            for c in chosen.changes
        ]
        zh = "；".join(self.words.change(c, "zh") for c in chosen.changes)
        en = "; ".join(self.words.change(c, "en") for c in chosen.changes)
        row_zh = row_en = ""
        if chosen.table_row is not None and chosen.table is not None:
            t_zh, t_en = self.words.title(chosen.table)
            n = chosen.table_row
            if chosen.table in self.values:
                row_zh, row_en = (
                    f"（依据“{t_zh}”决策表第{n}条规则）",
                    f" (rule {n} of the “{t_en}” table)",
                )
            else:
                row_zh, row_en = f"（依据“{t_zh}”表第{n}行）", f" (row {n} of the “{t_en}” table)"
        return Counterfactual(
            criterion=criterion,
            changes=changes,
            actionable=any(self.can_change(c) for c in chosen.changes),
            text_zh=f"{doc.title.zh}：{zh}{row_zh}。",
            text_en=f"{doc.title.en}: {en}{row_en}.",
            table_row=chosen.table_row,
        )

    def type_of(self, change: _Change) -> str | None:
        if change.computed:
            return _type_of(self.val(change.term)) if change.term is not None else None
        return self.types.get(change.fact)

    def current_json(self, change: _Change) -> JsonScalar:
        if change.computed:
            current = self.val(change.term) if change.term is not None else MISSING
        else:
            current = self.base.get(change.fact, MISSING)
        return _json(current, self.type_of(change))


def _json(v: object, type_name: str | None) -> JsonScalar:
    """One value as the record writes it; a ``number`` always as a decimal string."""
    if v is MISSING:
        return None
    out = typed_json(v, type_name) if type_name is not None else json_value(v)
    return None if isinstance(out, list) else out


def _required_json(change: _Change, type_name: str | None) -> JsonValue:
    """``required`` as the record writes it: a scalar, or a list for ``in``/``not in``."""
    if isinstance(change.required, tuple):
        return [_json(v, type_name) for v in change.required]
    return _json(change.required, type_name)


def _unsolved(
    criterion: str, title_zh: str, title_en: str, condition: tuple[str, str] | None
) -> Counterfactual:
    zh, en = condition or ("该项条件", "the condition of this criterion")
    return Counterfactual(
        criterion=criterion,
        changes=[],
        actionable=False,
        text_zh=f"{title_zh}：需满足：{zh}。",
        text_en=f"{title_en}: this must hold: {en}.",
    )


# --- words ------------------------------------------------------------------------------

_FIELD_WORDS: dict[str, tuple[str, str, str | None]] = {
    "birth_date": ("出生日期", "date of birth", None),
    "gender": ("性别", "gender", None),
    "name": ("姓名", "name", None),
    "hukou_city": ("户籍所在城市", "city of household registration", None),
    "hukou_district": ("户籍所在区", "district of household registration", None),
    "hukou_since": ("户籍迁入日期", "date of household registration", None),
    "holder_id_number": ("证书持有人身份证号码", "certificate holder's ID number", None),
    "holder_name": ("证书持有人姓名", "certificate holder's name", None),
    "degree": ("学历", "degree", None),
    "study_mode": ("学习形式", "mode of study", None),
    "school": ("毕业院校", "school", None),
    "graduation_date": ("毕业日期", "graduation date", None),
    "city": ("所在城市", "city", None),
    "status": ("状态", "status", None),
    "months_contributed": ("缴费月数", "months of contributions", "个月"),
    "employer_credit_code": ("用人单位统一社会信用代码", "employer's credit code", None),
    "employer_name": ("用人单位名称", "employer's name", None),
    "registered_city": ("注册地", "city of registration", None),
    "established_date": ("成立日期", "date of establishment", None),
    "right_type": ("权利类型", "type of right", None),
    "received_before": ("已领取过本项补贴", "has received this subsidy before", None),
    "owns_housing": ("拥有住房", "owns housing", None),
    "rents_public_housing": ("租住公共住房", "rents public housing", None),
    "deceased": ("死亡登记", "registered death", None),
    "death_date": ("死亡日期", "date of death", None),
    "receiving": ("正在领取", "currently receiving", None),
    "granted_date": ("发放日期", "date granted", None),
    "amount_yuan": ("金额", "amount", "元"),
    "babies": ("婴儿数", "number of babies", None),
    "dystocia": ("难产", "difficult birth", None),
    "hospital": ("医疗机构", "hospital", None),
    "insurance": ("险种", "insurance", None),
    "period": ("缴费所属期", "contribution period", None),
    "avg_monthly_wage": ("职工月平均工资", "average monthly wage", "元"),
    "valid_until": ("有效期截止日期", "expiry date", None),
    "residence_since": ("居住起始日期", "date residence began", None),
    "housing_type": ("住所类型", "type of housing", None),
    "consecutive_years": ("连续纳税年数", "consecutive years of tax payments", "年"),
    "avg_annual_tax": ("年均纳税额", "average annual tax", "元"),
    "violations": ("涉税违法记录数", "tax violations", "条"),
    "criminal_convictions": ("刑事犯罪记录数", "criminal convictions", "条"),
    "administrative_detentions": ("行政拘留记录数", "administrative detentions", "条"),
}
"""Words for the shipped registries' fields, used where the catalogue gives no ``title``."""

_MONEY = {"元", "元/月", "元/年"}
_UNIT_EN = {"元": "yuan", "元/月": "yuan a month", "元/年": "yuan a year"}
"""English texts name the quantity in the subject; only money keeps its unit."""

_OP_ZH = {">=": "至少为", "<=": "至多为", "==": "为", "!=": "不为", ">": "大于", "<": "小于"}
_OP_ZH_DATE = {">=": "不早于", "<=": "不晚于", "==": "为", "!=": "不为", ">": "晚于", "<": "早于"}
_OP_EN = {
    ">=": "must be at least",
    "<=": "must be at most",
    "==": "must be",
    "!=": "must not be",
    ">": "must be more than",
    "<": "must be less than",
}
_OP_EN_DATE = {
    ">=": "must be on or after",
    "<=": "must be on or before",
    "==": "must be",
    "!=": "must not be",
    ">": "must be after",
    "<": "must be before",
}
_IS_ZH = {">=": "不小于", "<=": "不大于", "==": "等于", "!=": "不等于", ">": "大于", "<": "小于"}
_IS_ZH_DATE = {">=": "不早于", "<=": "不晚于", "==": "为", "!=": "不为", ">": "晚于", "<": "早于"}
_IS_EN = {
    ">=": "is at least",
    "<=": "is at most",
    "==": "is",
    "!=": "is not",
    ">": "is more than",
    "<": "is less than",
}
_IS_EN_DATE = {
    ">=": "is on or after",
    "<=": "is on or before",
    "==": "is",
    "!=": "is not",
    ">": "is after",
    "<": "is before",
}
_ARITH = {
    "+": ("加", "plus"),
    "-": ("减", "minus"),
    "*": ("乘以", "times"),
    "/": ("除以", "divided by"),
}


def _lower_first(text: str) -> str:
    """``Total points`` → ``total points`` inside a sentence (acronyms such as ``ID`` kept)."""
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text


class _Words:
    """Names of facts, values and conditions as a citizen reads them (zh first, en second)."""

    def __init__(
        self, ruleset: Ruleset, catalogue: RegistryCatalogue | None, solver: _Solver
    ) -> None:
        self.rs = ruleset
        self.catalogue = catalogue
        self.solver: _Solver = weakref.proxy(solver)
        """The solver that owns these words: weak, or the two would be a reference cycle
        that only the garbage collector frees (every adverse decision)."""
        self.plans = {p.id: p for p in ruleset.evidence}
        self.inputs = {f.name: f for f in ruleset.doc.inputs}
        self.expr_values = {id(v.expr): v for v in ruleset.values if v.expr is not None}

    # --- names ------------------------------------------------------------------------

    def registry(self, fact: str) -> tuple[str, str]:
        plan = self.plans.get(fact.split(".", 1)[0])
        spec = self.catalogue.get(plan.source) if plan is not None and self.catalogue else None
        if spec is None:
            return "相关登记库", "registry"
        return spec.name.zh, spec.name.en

    def field(self, fact: str) -> tuple[str, str, str | None]:
        eid, _, name = fact.partition(".")
        plan = self.plans.get(eid)
        spec = self.catalogue.get(plan.source) if plan is not None and self.catalogue else None
        entry = spec.fields.get(name) if spec is not None else None
        title = entry.title if isinstance(entry, FieldSpec) else None
        glossary = _FIELD_WORDS.get(name)
        if title is not None:
            return title.zh, title.en, glossary[2] if glossary else None
        if glossary is not None:
            return glossary
        return "相关数据", "value", None

    def title(self, name: str) -> tuple[str, str]:
        """A value's, parameter's or table's title."""
        named = self.solver.values.get(name)
        if named is not None:
            return named.title.zh, named.title.en
        param = self.rs.doc.parameters.get(name)
        if param is not None:
            return param.title.zh, param.title.en
        table = self.rs.doc.tables.get(name)
        if table is not None:
            return table.title.zh, table.title.en
        return "决策表", "the decision table"

    def subject(self, fact: str, lang: str) -> str:
        zh = lang == "zh"
        if fact == "application.date":
            return "申请日期" if zh else "the application date"
        if fact == "applicant.id_number":
            return "申请人身份证号码" if zh else "the applicant's ID number"
        if fact == "applicant.name":
            return "申请人姓名" if zh else "the applicant's name"
        if fact.startswith("form."):
            spec = self.inputs.get(fact[5:])
            if spec is not None:
                return (
                    f"申请表中的“{spec.title.zh}”"
                    if zh
                    else f"“{spec.title.en}” on the application form"
                )
            return "申请表中的该项" if zh else "this item of the application form"
        source = self.rs.sources.get(fact, "")
        if source in ("value", "parameter", "table"):
            t = self.title(fact)
            return t[0] if zh else _lower_first(t[1])
        if source.startswith("registry:") or fact.split(".", 1)[0] in self.plans:
            reg_zh, reg_en = self.registry(fact)
            f_zh, f_en, _ = self.field(fact)
            of = "中的" if reg_zh.endswith(("记录", "查询", "明细")) else "记录的"
            return f"{reg_zh}{of}{f_zh}" if zh else f"the {f_en} recorded in the {reg_en}"
        return "该项数据" if zh else "this value"

    def unit(self, fact: str) -> str | None:
        source = self.rs.sources.get(fact, "")
        if source == "value":
            return self.solver.values[fact].unit
        if source == "parameter":
            param = self.rs.doc.parameters.get(fact)
            return param.unit if param is not None else None
        if fact.split(".", 1)[0] in self.plans:
            return self.field(fact)[2]
        return None

    def personal(self, fact: str) -> bool:
        if fact in ("applicant.id_number", "applicant.name") or is_personal_field(fact):
            return True
        plan = self.plans.get(fact.split(".", 1)[0])
        spec = self.catalogue.get(plan.source) if plan is not None and self.catalogue else None
        return spec is not None and spec.personal(fact.split(".", 1)[1]) is not None

    def claim(self, fact: str) -> str | None:
        """``exists`` or ``claim`` for a verify answer, else ``None``."""
        eid, _, name = fact.partition(".")
        plan = self.plans.get(eid)
        if plan is None or plan.mode != "verify":
            return None
        claim = plan.claims.get(name)
        if isinstance(claim, Claim):
            return "exists" if claim.exists else "claim"
        spec = self.catalogue.get(plan.source) if self.catalogue else None
        if spec is not None and spec.answers.get(name, "").strip() == "exists":
            return "exists"
        return "claim"

    # --- values -----------------------------------------------------------------------

    @staticmethod
    def shown(v: object, unit: str | None, lang: str) -> str:
        zh = lang == "zh"
        if v is MISSING or v is None:
            return "无记录" if zh else "no record"
        if isinstance(v, bool):
            return ("是" if v else "否") if zh else ("yes" if v else "no")
        if isinstance(v, tuple | list):
            items = [_Words.shown(i, unit, lang) for i in v]
            if len(items) <= 1:
                return "".join(items)
            return (
                ("、".join(items[:-1]) + "或" + items[-1])
                if zh
                else (", ".join(items[:-1]) + " or " + items[-1])
            )
        j = json_value(v)
        if unit in _MONEY and isinstance(j, int | str) and not isinstance(v, dt.date):
            return format_amount(j, unit=unit, lang=lang)
        text = str(j)
        if not unit:
            return text
        if zh:
            return f"{text}{unit}"
        return f"{text} {_UNIT_EN[unit]}" if unit in _UNIT_EN else text

    @staticmethod
    def listed(values: object, unit: str | None, lang: str, *, every: bool) -> str:
        """``A、B或C之一`` / ``one of A, B or C``; with ``every``: ``A、B中的任何一项`` /
        ``none of A, B``."""
        items = [
            _Words.shown(v, unit, lang)
            for v in (values if isinstance(values, tuple | list) else [values])
        ]
        if lang == "zh":
            if len(items) == 1:
                return items[0]
            if every:
                return "、".join(items) + "中的任何一项"
            return "、".join(items[:-1]) + "或" + items[-1] + "之一"
        if len(items) == 1:
            return ("other than " if every else "") + items[0]
        if every:
            return "none of " + ", ".join(items)
        return "one of " + ", ".join(items[:-1]) + " or " + items[-1]

    # --- changes ----------------------------------------------------------------------

    def change(self, c: _Change, lang: str) -> str:
        zh = lang == "zh"
        s = self.solver
        if c.computed and c.term is not None:
            subject, unit = self.describe(c.term, lang), self.term_unit(c.term)
            current = s.val(c.term)
        else:
            subject, unit = self.subject(c.fact, lang), self.unit(c.fact)
            current = s.base.get(c.fact, MISSING)
        hide = not c.computed and self.personal(c.fact)
        now = self.shown(current, unit, lang)
        required = self.shown(c.required, unit, lang)
        dated = isinstance(c.required, dt.date)
        if not c.computed and self.claim(c.fact) == "exists" and isinstance(c.required, bool):
            reg_zh, reg_en = self.registry(c.fact)
            has = current is True
            if zh:
                text = f"需在{reg_zh}中有登记记录" if c.required else f"需{reg_zh}中没有相关记录"
                return text + ("，当前有记录" if has else "，当前无记录")
            text = (
                f"there must be a record in the {reg_en}"
                if c.required
                else f"there must be no record in the {reg_en}"
            )
            return text + (" (there is one)" if has else " (there is none)")
        if not c.computed and self.claim(c.fact) == "claim" and isinstance(c.required, bool):
            reg_zh, reg_en = self.registry(c.fact)
            f_zh, f_en, _ = self.field(c.fact)
            if zh:
                return f"需{reg_zh}核验“{f_zh}”的结果为{required}，当前为{now}"
            return f"the {reg_en} must answer {required} to “{f_en}” (it answers {now})"
        if c.other is not None and c.op == "==":
            other = self.subject(c.other, lang)
            hide = hide or self.personal(c.other)
            if zh:
                return f"需{subject}与{other}一致" + (
                    "" if hide else f"，当前分别为{now}和{required}"
                )
            return f"{subject} must match {other}" + (
                "" if hide else f" (currently {now} and {required})"
            )
        if hide:
            now = required = "（略）" if zh else "(withheld)"
        if c.op in ("in", "not in"):
            listed = self.listed(c.required, unit, lang, every=c.op == "not in")
            if zh:
                text = f"需{subject}{'为' if c.op == 'in' else '不为'}{listed}，当前为{now}"
            else:
                text = f"{subject} must be {listed} (currently {now})"
        else:
            words = (_OP_ZH_DATE if dated else _OP_ZH) if zh else (_OP_EN_DATE if dated else _OP_EN)
            text = (
                f"需{subject}{words[c.op]}{required}，当前为{now}"
                if zh
                else f"{subject} {words[c.op]} {required} (currently {now})"
            )
        if c.strict is not None:
            bound = self.shown(c.strict, unit, lang)
            text += f"（规则要求大于{bound}）" if c.op == ">=" and zh else ""
            text += f"（规则要求小于{bound}）" if c.op == "<=" and zh else ""
            text += f"; the rule asks for more than {bound}" if c.op == ">=" and not zh else ""
            text += f"; the rule asks for less than {bound}" if c.op == "<=" and not zh else ""
        if (
            not c.computed
            and c.term is not None
            and c.term_op is not None
            and c.bound is not MISSING
        ):
            term = self.describe(c.term, lang)
            bound = self.shown(c.bound, self.term_unit(c.term), lang)
            is_dated = isinstance(c.bound, dt.date)
            if zh:
                text += f"（即{term}{(_IS_ZH_DATE if is_dated else _IS_ZH)[c.term_op]}{bound}）"
            else:
                text += (
                    f", so that {term} {(_IS_EN_DATE if is_dated else _IS_EN)[c.term_op]} {bound}"
                )
        return text

    def term_unit(self, node: Expr) -> str | None:
        named = self.expr_values.get(id(node))
        if named is not None:
            return named.unit
        if isinstance(node, Name):
            return self.unit(node.dotted)
        if isinstance(node, Call) and node.func == "age_on":
            return "周岁"
        if (
            isinstance(node, Call)
            and node.func in ("floor", "ceil", "round", "min", "max", "abs")
            and node.args
        ):
            return self.term_unit(node.args[0])
        return None

    # --- describing expressions -----------------------------------------------------------

    def describe(self, node: Expr, lang: str) -> str:
        zh = lang == "zh"
        named = self.expr_values.get(id(node))
        if named is not None:
            return named.title.zh if zh else _lower_first(named.title.en)
        match node:
            case Name():
                return self.subject(node.dotted, lang)
            case Literal(value=v):
                return self.shown(v, None, lang)
            case Call(func="date", args=(Literal(value=v),)):
                return str(v)
            case Call(func="age_on", args=(birth, day)):
                on = self.describe(day, lang)
                if isinstance(day, Name) and day.dotted == "application.date":
                    on = "申请日" if zh else "the application date"
                if any("birth" in n for n in names_in(birth)):
                    return f"{on}的周岁" if zh else f"the age on {on}"
                start = self.describe(birth, lang)
                return f"自{start}至{on}的整年数" if zh else f"the full years from {start} to {on}"
            case Call(func="days_between", args=(a, b)):
                a_, b_ = self.describe(a, lang), self.describe(b, lang)
                return f"自{a_}至{b_}的天数" if zh else f"the days from {a_} to {b_}"
            case Call(func="years_before" | "years_after" as f, args=(d, n)):
                d_, n_ = self.describe(d, lang), self.describe(n, lang)
                if zh:
                    return f"{d_}{'前' if f == 'years_before' else '后'}{n_}年的对应日"
                return f"the day {n_} years {'before' if f == 'years_before' else 'after'} {d_}"
            case Call(func="year" | "month" | "day" as f, args=(d,)):
                d_ = self.describe(d, lang)
                names = {"year": ("年份", "year"), "month": ("月份", "month"), "day": ("日", "day")}
                return f"{d_}的{names[f][0]}" if zh else f"the {names[f][1]} of {d_}"
            case Call(func="floor" | "ceil" | "round" as f, args=args) if args:
                x = self.describe(args[0], lang)
                how = {
                    "floor": ("向下取整", "rounded down"),
                    "ceil": ("向上取整", "rounded up"),
                    "round": ("四舍五入", "rounded"),
                }[f]
                return f"{x}（{how[0]}）" if zh else f"{x} ({how[1]})"
            case Call(func="min" | "max" as f, args=args):
                parts = [self.describe(a, lang) for a in args]
                if zh:
                    return "、".join(parts) + ("中较小者" if f == "min" else "中较大者")
                return f"the {'smaller' if f == 'min' else 'larger'} of " + ", ".join(parts)
            case Call(func="abs", args=(x,)):
                x_ = self.describe(x, lang)
                return f"{x_}的绝对值" if zh else f"the absolute value of {x_}"
            case Arith(op=op, left=l, right=r):

                def part(n: Expr) -> str:
                    text = self.describe(n, lang)
                    nested = isinstance(n, Arith) and id(n) not in self.expr_values
                    return (f"（{text}）" if zh else f"({text})") if nested else text

                word = _ARITH[op][0 if zh else 1]
                return f"{part(l)}{word}{part(r)}" if zh else f"{part(l)} {word} {part(r)}"
            case Neg(operand=o):
                return f"负的{self.describe(o, lang)}" if zh else f"minus {self.describe(o, lang)}"
            case Index(table=t, key=k):
                title = self.title(t.dotted)
                key = self.describe(k, lang)
                return f"{title[0]}中{key}对应的值" if zh else f"the value for {key} in {title[1]}"
            case If(cond=c, then=a, orelse=b):
                c_, a_, b_ = (
                    self.condition_text(c, lang),
                    self.describe(a, lang),
                    self.describe(b, lang),
                )
                return f"（{c_}时为{a_}，否则为{b_}）" if zh else f"({a_} if {c_}, otherwise {b_})"
            case Compare() | In() | Not() | And() | Or():
                return self.condition_text(node, lang)
        return "相关计算值" if zh else "a computed value"

    def condition(self, node: Expr) -> tuple[str, str]:
        return self.condition_text(node, "zh"), self.condition_text(node, "en")

    def condition_text(self, node: Expr, lang: str) -> str:
        zh = lang == "zh"
        match node:
            case Compare(op=op, left=l, right=r):
                dated = any(isinstance(self.solver.val(x), dt.date) for x in (l, r))
                words = (
                    (_IS_ZH_DATE if dated else _IS_ZH) if zh else (_IS_EN_DATE if dated else _IS_EN)
                )
                if (
                    isinstance(r, Literal)
                    and isinstance(r.value, str | bool)
                    and op in ("==", "!=")
                ):
                    words = {"==": "为", "!=": "不为"} if zh else {"==": "is", "!=": "is not"}
                return (
                    f"{self.describe(l, lang)}{words[op]}{self.describe(r, lang)}"
                    if zh
                    else f"{self.describe(l, lang)} {words[op]} {self.describe(r, lang)}"
                )
            case In(needle=n, haystack=h, negated=neg):
                x = self.describe(n, lang)
                if isinstance(h, ListLit):
                    values = tuple(value(i, {}, {}) for i in h.items)
                    items = self.listed(values, None, lang, every=neg)
                    if zh:
                        return f"{x}{'不为' if neg else '为'}{items}"
                    return f"{x} is {items}"
                title = self.title(h.dotted) if isinstance(h, Name) else ("决策表", "the table")
                if zh:
                    return f"{x}{'不' if neg else ''}为{title[0]}所列的一项"
                return f"{x} is {'not ' if neg else ''}an entry of {title[1]}"
            case Not(operand=o):
                inner = self.condition_text(o, lang)
                return f"并非（{inner}）" if zh else f"not ({inner})"
            case And(items=items) | Or(items=items):
                parts = [self.condition_text(i, lang) for i in items]
                parts = [
                    f"（{p}）"
                    if zh and isinstance(i, And | Or)
                    else f"({p})"
                    if isinstance(i, And | Or)
                    else p
                    for p, i in zip(parts, items, strict=True)
                ]
                if isinstance(node, And):
                    return "，且".join(parts) if zh else " and ".join(parts)
                return "，或".join(parts) if zh else " or ".join(parts)
            case Name():
                return (
                    f"{self.subject(node.dotted, lang)}为是"
                    if zh
                    else f"{self.subject(node.dotted, lang)} is yes"
                )
            case Literal(value=v):
                return self.shown(v, None, lang)
        return self.describe(node, lang)
