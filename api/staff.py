"""Staff routes: the review queue (reviewer) and the audit (auditor); the signed log (public).

Every action here is written to ``staff_actions`` with who did it, reads of a case or a
record included: looking at someone's file is itself an act to account for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from api.auth import Principal, Role
from api.citizen import CaseOut, case_out
from api.common import AUTH_RESPONSES, AppContext, ErrorBody, error, staff
from engine import Outcome
from engine.text import FreeText, SingleLine
from explanations import replay
from explanations.log import public_key_pem

__all__ = ["install_staff_routes"]

Reviewer = Annotated[Principal, Depends(staff(Role.REVIEWER))]
Auditor = Annotated[Principal, Depends(staff(Role.AUDITOR))]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    404: {"model": ErrorBody, "description": "no such case or decision"},
}


class Resolve(BaseModel):
    """A reviewer's decision on a case: a new record, linked to the automated one."""

    outcome: Literal["APPROVED", "REJECTED"]
    reason_zh: FreeText = Field(min_length=1, max_length=4000, description="理由（中文）")
    reason_en: FreeText | None = Field(default=None, max_length=4000)
    outputs: dict[SingleLine, SingleLine | int | bool | None] | None = Field(
        default=None,
        description="amounts etc. when the person decides them (exact decimals as strings)",
    )


def install_staff_routes(app: FastAPI, ctx: AppContext) -> None:
    conflict: dict[int | str, dict[str, Any]] = {
        409: {"model": ErrorBody, "description": "claimed by someone else, or resolved"}
    }

    @app.get(
        "/v1/review/cases", tags=["review"], response_model=list[CaseOut], responses=AUTH_RESPONSES
    )
    def list_cases(
        who: Reviewer,
        status: Literal["open", "in_review", "resolved"] | None = None,
        kind: Literal["referral", "objection", "human_decision"] | None = None,
        service: Annotated[str | None, Query(max_length=64)] = None,
        mine: bool = False,
        overdue: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,  # a database integer
    ) -> JSONResponse:
        """The review queue, earliest due first, filtered (role ``reviewer``)."""
        cases = ctx.reviews.queue(
            status=status,
            kind=kind,
            service=service,
            assignee=who.subject if mine else None,
            overdue=overdue,
            limit=limit,
            offset=offset,
        )
        ctx.auth.keys.log_action(who, "list_cases", None, status=status, kind=kind, service=service)
        return JSONResponse([case_out(c).model_dump(mode="json") for c in cases])

    @app.get("/v1/review/cases/{case_id}", tags=["review"], responses=NOT_FOUND)
    def get_case(case_id: str, who: Reviewer) -> JSONResponse:
        """One case with the citizen's statement and the full record and evidence (``reviewer``)."""
        case = ctx.reviews.get(case_id)
        if case is None:
            return error(404, "CASE_NOT_FOUND", "未找到该案件", f"no case {case_id}")
        record = ctx.store.get_record(case.decision_id)
        ctx.auth.keys.log_action(who, "view_case", case_id, decision_id=case.decision_id)
        return JSONResponse(
            {
                "case": case_out(case).model_dump(mode="json"),
                "statement": case.statement,
                "assignee": case.assignee,
                "record": record.model_dump(mode="json") if record else None,
            }
        )

    @app.post(
        "/v1/review/cases/{case_id}/claim",
        tags=["review"],
        response_model=CaseOut,
        responses={**NOT_FOUND, **conflict},
    )
    def claim_case(case_id: str, who: Reviewer) -> JSONResponse:
        """Take a case (role ``reviewer``); a case held by someone else is refused (409)."""
        try:
            case = ctx.reviews.claim(case_id, who.subject)
        except KeyError:
            return error(404, "CASE_NOT_FOUND", "未找到该案件", f"no case {case_id}")
        ctx.auth.keys.log_action(who, "claim_case", case_id)
        return JSONResponse(case_out(case).model_dump(mode="json"))

    @app.post(
        "/v1/review/cases/{case_id}/resolve",
        tags=["review"],
        status_code=201,
        responses={**NOT_FOUND, **conflict},
    )
    def resolve_case(case_id: str, body: Resolve, who: Reviewer) -> JSONResponse:
        """Decide the case (the claiming ``reviewer``): a human decision record joins the log."""
        try:
            done = ctx.reviews.resolve(
                case_id,
                reviewer=who.subject,
                outcome=Outcome(body.outcome),
                reason_zh=body.reason_zh,
                reason_en=body.reason_en,
                outputs=body.outputs,
            )
        except KeyError:
            return error(404, "CASE_NOT_FOUND", "未找到该案件", f"no case {case_id}")
        ctx.auth.keys.log_action(
            who,
            "resolve_case",
            case_id,
            outcome=body.outcome,
            human_decision=done.stored.decision_id,
        )
        return JSONResponse(
            {
                "case": case_out(done.case).model_dump(mode="json"),
                "human_decision": done.stored.response,
                "receipt": done.stored.receipt.model_dump(mode="json")
                if done.stored.receipt
                else None,
            },
            status_code=201,
        )

    # --- audit -----------------------------------------------------------------------------

    @app.get("/v1/audit/verify", tags=["audit"], responses=AUTH_RESPONSES)
    def audit_verify(who: Auditor) -> JSONResponse:
        """Verify every record, row, log node and signed head (role ``auditor``)."""
        from explanations.log import load_public_keys, public_key_id

        key = ctx.signing_key.public_key()
        keys = {public_key_id(key): key, **load_public_keys(ctx.settings.trusted_public_keys)}
        count, problems = ctx.store.verify(keys=keys)
        ctx.auth.keys.log_action(who, "audit_verify", None, records=count, problems=len(problems))
        return JSONResponse(
            {
                "records": count,
                "intact": not problems,
                "problems": [
                    {"seq": p.seq, "decision_id": p.decision_id, "message": p.message}
                    for p in problems[:1000]
                ],
            }
        )

    @app.get("/v1/audit/replay/{decision_id}", tags=["audit"], responses=NOT_FOUND)
    def audit_replay(decision_id: str, who: Auditor) -> JSONResponse:
        """Re-decide a record from its recorded ruleset version and evidence (``auditor``)."""
        record = ctx.store.get_record(decision_id)
        if record is None:
            return error(404, "DECISION_NOT_FOUND", "未找到该决定", f"no decision {decision_id}")
        ruleset = ctx.service.catalog.get(record.service, record.ruleset_version)
        ctx.auth.keys.log_action(who, "audit_replay", decision_id)
        if ruleset is None:
            return JSONResponse(
                {
                    "decision_id": decision_id,
                    "identical": False,
                    "differences": [
                        f"ruleset {record.service}@{record.ruleset_version} is not loaded"
                    ],
                }
            )
        result = replay(record, ruleset)
        return JSONResponse(
            {
                "decision_id": decision_id,
                "identical": result.identical,
                "differences": result.differences,
            }
        )

    @app.get(
        "/v1/audit/export",
        tags=["audit"],
        response_class=StreamingResponse,
        responses={**AUTH_RESPONSES, 200: {"content": {"application/x-ndjson": {}}}},
    )
    def audit_export(who: Auditor, after_seq: Annotated[int, Query(ge=0)] = 0) -> StreamingResponse:
        """Every stored record after ``after_seq`` as JSON lines, exactly as hashed (``auditor``)."""
        ctx.auth.keys.log_action(who, "audit_export", None, after_seq=after_seq)

        def lines() -> Iterator[bytes]:
            for row in ctx.store.iter_records():
                if row.seq > after_seq:
                    line = {
                        "seq": row.seq,
                        "record_hash": row.record_hash,
                        "record": json.loads(row.record_json),
                    }
                    yield (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.get("/v1/audit/actions", tags=["audit"], responses=AUTH_RESPONSES)
    def audit_actions(
        who: Auditor, limit: Annotated[int, Query(ge=1, le=5000)] = 500
    ) -> JSONResponse:
        """What staff did, newest first, with who did it (role ``auditor``)."""
        rows = ctx.auth.keys.actions(limit=limit)
        ctx.auth.keys.log_action(who, "audit_actions", None)
        return JSONResponse(
            [
                {
                    "at": r.at.isoformat(),
                    "actor": r.actor,
                    "role": r.role,
                    "action": r.action,
                    "target": r.target,
                    "detail": json.loads(r.detail_json),
                }
                for r in rows
            ]
        )

    # --- the signed log: public by design ----------------------------------------------------

    @app.get(
        "/v1/log/checkpoint",
        tags=["log"],
        responses={404: {"model": ErrorBody, "description": "the log is empty"}},
    )
    def log_checkpoint() -> JSONResponse:
        """The latest signed checkpoint (size, root, time, signature). Public: save it."""
        head = ctx.store.checkpoint()
        if head is None:
            return error(404, "LOG_EMPTY", "日志为空", "the log is empty")
        return JSONResponse(head.model_dump(mode="json"))

    @app.get("/v1/log/public-key", tags=["log"], response_class=PlainTextResponse)
    def log_public_key() -> PlainTextResponse:
        """The Ed25519 public key that verifies checkpoints and receipts (PEM)."""
        return PlainTextResponse(public_key_pem(ctx.signing_key))

    @app.get(
        "/v1/log/consistency",
        tags=["log"],
        responses={400: {"model": ErrorBody, "description": "sizes out of range"}},
    )
    def log_consistency(
        first: Annotated[int, Query(ge=1)], second: Annotated[int, Query(ge=1)]
    ) -> JSONResponse:
        """RFC 6962 consistency proof between two tree sizes (hex hashes). Public."""
        head = ctx.store.checkpoint()
        size = head.size if head else 0
        if not first <= second <= size:
            return error(
                400,
                "BAD_TREE_SIZES",
                f"须满足 1 ≤ first ≤ second ≤ {size}",
                f"need 1 <= first <= second <= {size}",
            )
        proof = ctx.store.consistency_proof(first, second)
        return JSONResponse({"first": first, "second": second, "proof": [p.hex() for p in proof]})
