"""Human review: cases opened by referrals, objections and requests for a human decision.

A REFERRED decision opens a ``referral`` case in the same transaction that stores it, so a
referral can never be acknowledged and then lost. A citizen opens an ``objection`` (any
outcome they disagree with) or a ``human_decision`` case (《个人信息保护法》第二十四条: the right
to refuse a decision made solely by automated means). A reviewer claims a case and resolves
it; the resolution is a new ``HumanDecisionRecord`` in the log, linked to the automated one,
which stays as it was.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, select

from engine import Outcome
from explanations.record import AnyRecord, Chained, ExplanationRecordV1, HumanDecisionRecord
from explanations.store import DecisionStore, StoredDecision

__all__ = [
    "CaseConflict",
    "CaseKind",
    "ReviewCaseRow",
    "ReviewStore",
    "add_working_days",
]

SHANGHAI = ZoneInfo("Asia/Shanghai")
CaseKind = Literal["referral", "objection", "human_decision"]
CASE_KINDS: tuple[str, ...] = ("referral", "objection", "human_decision")
CASE_STATUSES: tuple[str, ...] = ("open", "in_review", "resolved")


def add_working_days(day: dt.date, days: int) -> dt.date:
    """``days`` working days after ``day``, skipping Saturdays and Sundays.

    Public holidays and the adjusted working weekends of the State Council's calendar are
    not modelled: a deadline may come out a day or two early around holidays, never late.
    """
    current = day
    left = days
    while left > 0:
        current += dt.timedelta(days=1)
        if current.weekday() < 5:
            left -= 1
    return current


class ReviewCaseRow(SQLModel, table=True):
    __tablename__ = "review_cases"

    id: str = Field(primary_key=True, max_length=40)
    decision_id: str = Field(index=True, max_length=40)
    kind: str = Field(max_length=16)
    status: str = Field(index=True, max_length=16)
    service: str = Field(index=True, max_length=64)
    automated_outcome: str = Field(max_length=16)
    opened_at: dt.datetime
    opened_by: str = Field(max_length=200)
    """``system`` for a referral, ``citizen`` for an objection or a request."""
    due_on: dt.date
    statement: str = Field(default="", sa_type=sa.Text)
    """What the citizen wrote (their own words about their own case)."""
    assignee: str | None = Field(default=None, max_length=200)
    claimed_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    resolution_outcome: str | None = Field(default=None, max_length=16)
    resolution_reason: str | None = Field(default=None, sa_type=sa.Text)
    human_decision_id: str | None = Field(default=None, max_length=40)


class CaseConflict(Exception):
    """The case cannot move that way (already open, claimed by someone else, resolved)."""

    def __init__(self, code: str, zh: str, en: str, case: ReviewCaseRow | None = None) -> None:
        super().__init__(en)
        self.code = code
        self.message_zh = zh
        self.message_en = en
        self.case = case


@dataclass(frozen=True)
class Resolution:
    case: ReviewCaseRow
    stored: StoredDecision


CASES = ReviewCaseRow.__table__  # type: ignore[attr-defined]


class ReviewStore:
    """Review cases beside the decision store (same database, same transactions)."""

    def __init__(
        self,
        store: DecisionStore,
        *,
        working_days: Callable[[str, CaseKind], int] = lambda service, kind: 5,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.working_days = working_days
        self.clock = clock

    def create_schema(self) -> None:
        """Bring the schema (review cases included) to head with the shipped migrations."""
        from explanations.migrate import upgrade

        upgrade(self.store.engine)

    def _due(self, service: str, kind: CaseKind, at: dt.datetime) -> dt.date:
        return add_working_days(at.astimezone(SHANGHAI).date(), self.working_days(service, kind))

    def referral_hook(self, conn: sa.Connection, record: AnyRecord | Chained) -> None:
        """For ``DecisionStore.append``: open a referral case with a REFERRED decision (given
        as its record, or as the row fields the store writes from a record's dump)."""
        case = self.referral_case(record)
        if case is not None:
            conn.execute(CASES.insert(), case)  # values as parameters: one cached statement

    def referral_case(self, record: AnyRecord | Chained) -> dict[str, Any] | None:
        """The referral case a REFERRED automated decision opens (its row), or None."""
        if isinstance(record, HumanDecisionRecord) or record.outcome is not Outcome.REFERRED:
            return None
        return {
            "id": str(uuid.uuid4()),
            "decision_id": record.decision_id,
            "kind": "referral",
            "status": "open",
            "service": record.service,
            "automated_outcome": record.outcome.value,
            "opened_at": record.decided_at,
            "opened_by": "system",
            "due_on": self._due(record.service, "referral", record.decided_at),
            "statement": "",
        }

    # --- reading -------------------------------------------------------------------------

    def cases_of(self, decision_id: str) -> Sequence[ReviewCaseRow]:
        with Session(self.store.engine) as s:
            return s.exec(
                select(ReviewCaseRow)
                .where(ReviewCaseRow.decision_id == decision_id)
                .order_by(sa.asc(sa.column("opened_at")))
            ).all()

    def get(self, case_id: str) -> ReviewCaseRow | None:
        with Session(self.store.engine) as s:
            return s.get(ReviewCaseRow, case_id)

    def queue(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        service: str | None = None,
        assignee: str | None = None,
        overdue: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Sequence[ReviewCaseRow]:
        """Cases, oldest due first, filtered."""
        q = select(ReviewCaseRow)
        if status is not None:
            q = q.where(ReviewCaseRow.status == status)
        if kind is not None:
            q = q.where(ReviewCaseRow.kind == kind)
        if service is not None:
            q = q.where(ReviewCaseRow.service == service)
        if assignee is not None:
            q = q.where(ReviewCaseRow.assignee == assignee)
        if overdue is not None:
            today = self.clock().astimezone(SHANGHAI).date()
            late = sa.and_(CASES.c.status != "resolved", CASES.c.due_on < today)
            q = q.where(late if overdue else sa.not_(late))
        q = q.order_by(sa.asc(sa.column("due_on")), sa.asc(sa.column("opened_at")))
        with Session(self.store.engine) as s:
            return s.exec(q.offset(offset).limit(limit)).all()

    # --- the citizen ---------------------------------------------------------------------

    def open_case(
        self, record: ExplanationRecordV1, *, kind: CaseKind, statement: str
    ) -> ReviewCaseRow:
        """An objection or a request for a human decision; one open case per decision."""
        now = self.clock()
        with Session(self.store.engine) as s:
            existing = s.exec(
                select(ReviewCaseRow).where(ReviewCaseRow.decision_id == record.decision_id)
            ).all()
            for case in existing:
                if case.status != "resolved":
                    raise CaseConflict(
                        "CASE_ALREADY_OPEN",
                        "该决定已有正在处理的复核案件",
                        "a review case for this decision is already open",
                        case,
                    )
            if existing:
                raise CaseConflict(
                    "ALREADY_DECIDED_BY_A_PERSON",
                    "工作人员已对该申请作出决定；如不服，可依法申请行政复议或提起行政诉讼",
                    "a person has already decided this application; what remains is "
                    "administrative reconsideration or an administrative lawsuit",
                    existing[-1],
                )
            case = ReviewCaseRow(
                id=str(uuid.uuid4()),
                decision_id=record.decision_id,
                kind=kind,
                status="open",
                service=record.service,
                automated_outcome=record.outcome.value,
                opened_at=now,
                opened_by="citizen",
                due_on=self._due(record.service, kind, now),
                statement=statement,
            )
            s.add(case)
            s.commit()
            s.refresh(case)
            return case

    # --- reviewers -----------------------------------------------------------------------

    def claim(self, case_id: str, reviewer: str) -> ReviewCaseRow:
        """Take a case; claiming a case someone else holds is refused, re-claiming is fine."""
        with Session(self.store.engine) as s:
            case = s.get(ReviewCaseRow, case_id, with_for_update=not self.store.is_sqlite)
            if case is None:
                raise KeyError(case_id)
            if case.status == "resolved":
                raise CaseConflict(
                    "CASE_RESOLVED", "该案件已办结", "the case is already resolved", case
                )
            if case.assignee not in (None, reviewer):
                raise CaseConflict(
                    "CASE_CLAIMED",
                    "该案件已由其他复核人员认领",
                    f"the case is claimed by {case.assignee}",
                    case,
                )
            case.assignee = reviewer
            case.status = "in_review"
            case.claimed_at = case.claimed_at or self.clock()
            s.add(case)
            s.commit()
            s.refresh(case)
            return case

    def resolve(
        self,
        case_id: str,
        *,
        reviewer: str,
        outcome: Outcome,
        reason_zh: str,
        reason_en: str | None = None,
        outputs: dict[str, Any] | None = None,
    ) -> Resolution:
        """Record the human decision (a new record in the log) and close the case.

        Only the reviewer holding the case resolves it. The human decision and the case's
        new state commit in one transaction; resolving twice returns the first resolution.
        """
        case = self.get(case_id)
        if case is None:
            raise KeyError(case_id)
        if case.status == "resolved":
            raise CaseConflict(
                "CASE_RESOLVED", "该案件已办结", "the case is already resolved", case
            )
        if case.assignee != reviewer:
            raise CaseConflict(
                "CASE_NOT_CLAIMED",
                "请先认领该案件",
                "claim the case before resolving it",
                case,
            )
        automated = self.store.get_record(case.decision_id)
        if automated is None:
            raise KeyError(case.decision_id)
        decided_at = self.clock()
        decision_id = str(uuid.uuid4())

        def build(seq: int, prev_hash: str) -> HumanDecisionRecord:
            return HumanDecisionRecord(
                seq=seq,
                decision_id=decision_id,
                reviews_decision_id=automated.decision_id,
                case_id=case.id,
                case_kind=case.kind,  # type: ignore[arg-type]
                application_id=automated.application_id,
                service=automated.service,
                ruleset_version=automated.ruleset_version,
                automated_outcome=automated.outcome,
                outcome=outcome,
                outputs=outputs,
                reason_zh=reason_zh,
                reason_en=reason_en,
                reviewer=reviewer,
                decided_at=decided_at,
                prev_hash=prev_hash,
            )

        def close(conn: sa.Connection, record: AnyRecord) -> None:
            done = conn.execute(
                CASES.update()
                .where(CASES.c.id == case.id, CASES.c.status != "resolved")
                .values(
                    status="resolved",
                    resolved_at=decided_at,
                    resolution_outcome=outcome.value,
                    resolution_reason=reason_zh,
                    human_decision_id=record.decision_id,
                )
            )
            if done.rowcount != 1:
                raise CaseConflict(
                    "CASE_RESOLVED", "该案件已办结", "the case is already resolved", case
                )

        stored = self.store.append(
            idempotency_key=f"review:{case.id}",
            request_sha256=f"review:{case.id}",
            build=build,
            on_stored=close,
        )
        resolved = self.get(case.id)
        assert resolved is not None
        return Resolution(resolved, stored)
