"""What the citizen reaches with the per-decision token: the page, objections, case status.

The explanation page answers 404 to a missing or wrong token, exactly as to a decision that
does not exist, so a page tells nothing to someone who does not hold its token.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import structlog
from fastapi import FastAPI, Form, Query
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from api.common import AppContext, ErrorBody, TokenHeader, TokenQuery, error
from engine.text import FreeText, check_text
from explanations import ExplanationRecordV1
from explanations.review import CaseConflict, ReviewCaseRow

__all__ = ["CaseOut", "ObjectionIn", "case_out", "install_citizen_routes"]

log = structlog.get_logger("miaopi.citizen")

Lang = Annotated[Literal["zh", "en"], Query(description="zh (default) or en")]


class ObjectionIn(BaseModel):
    """An objection (提出异议) or a request for a human decision (PIPL art. 24)."""

    kind: Literal["objection", "human_decision"] = "objection"
    reason: FreeText = Field(
        min_length=1, max_length=2000, description="申请人陈述 / your statement"
    )


class CaseOut(BaseModel):
    case_id: str
    decision_id: str
    kind: str
    status: str
    opened_at: dt.datetime
    due_on: dt.date
    resolved_at: dt.datetime | None = None
    outcome: str | None = None
    reason: str | None = None
    human_decision_id: str | None = None
    human_decision_token: str | None = None
    """For the citizen: opens the human decision (``/v1/decisions/{id}?token=``)."""


def case_out(case: ReviewCaseRow, ctx: AppContext | None = None) -> CaseOut:
    return CaseOut(
        case_id=case.id,
        decision_id=case.decision_id,
        kind=case.kind,
        status=case.status,
        opened_at=case.opened_at,
        due_on=case.due_on,
        resolved_at=case.resolved_at,
        outcome=case.resolution_outcome,
        reason=case.resolution_reason,
        human_decision_id=case.human_decision_id,
        human_decision_token=ctx.token_for(case.human_decision_id)
        if ctx is not None and case.human_decision_id
        else None,
    )


_NOT_FOUND_PAGE = """<!doctype html><html lang="zh-CN"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>未找到 / Not found</title><body style="font-family:sans-serif;padding:1rem">
<h1>未找到该页面</h1><p>Not found.</p></body></html>"""


def install_citizen_routes(app: FastAPI, ctx: AppContext) -> None:
    token_responses: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorBody, "description": "no access token"},
        403: {"model": ErrorBody, "description": "wrong access token"},
        404: {"model": ErrorBody, "description": "no such decision"},
    }

    def record_for(decision_id: str, token: str | None) -> ExplanationRecordV1 | None:
        if not ctx.token_opens(decision_id, token):
            return None
        return ctx.store.get_record(decision_id)

    def page(record: ExplanationRecordV1, token: str, lang: str, notice: str | None = None) -> str:
        from explanations.page import render_page

        cases = ctx.reviews.cases_of(record.decision_id)
        return render_page(
            record,
            lang=lang,
            token=token,
            guide=ctx.guides.get(record.service),
            counterfactuals=record.counterfactuals,
            review=review_view(cases[-1], ctx) if cases else None,
            receipt=(
                r.model_dump(mode="json") if (r := ctx.store.receipt(record.decision_id)) else None
            ),
            base_path=ctx.settings.public_base_url,
            registries=ctx.service.registries,
            notice=notice,
        )

    @app.get(
        "/explain/{decision_id}",
        tags=["citizen"],
        response_class=HTMLResponse,
        responses={
            404: {
                "description": "no such decision, or no or wrong token (the same answer)",
                "content": {"text/html": {}},
            }
        },
    )
    def explanation_page(
        decision_id: str, token: TokenQuery = None, lang: Lang = "zh", sent: str | None = None
    ) -> Response:
        """The citizen's explanation page (HTML, one language at a time, printable)."""
        record = record_for(decision_id, token)
        if record is None or token is None:
            return HTMLResponse(_NOT_FOUND_PAGE, status_code=404)
        notices = {
            ("1", "zh"): "您的请求已收到，复核期限见下方。",
            ("1", "en"): "Your request has been received; the review deadline is shown below.",
            ("invalid", "zh"): "请选择请求类型并填写理由（不超过2000字）。",
            (
                "invalid",
                "en",
            ): "Choose what you ask for and give your reasons (at most 2,000 characters).",
        }
        notice = notices.get((sent or "", lang))
        return HTMLResponse(
            page(record, token, lang, notice),
            headers={
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; img-src data:",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @app.post(
        "/explain/{decision_id}/requests",
        tags=["citizen"],
        response_class=RedirectResponse,
        status_code=303,
        responses={
            303: {"description": "back to the page, saying whether the request was received"},
            404: {
                "description": "no such decision, or no or wrong token",
                "content": {"text/html": {}},
            },
        },
    )
    def page_request(
        decision_id: str,
        token: TokenQuery = None,
        lang: Lang = "zh",
        kind: Annotated[str | None, Form()] = None,
        reason: Annotated[str | None, Form()] = None,
    ) -> Response:
        """The page's form: an objection or a request for a human decision.

        The token is checked before anything else (a stranger learns nothing, not even
        whether the form was well filled); a form without a reason comes back to the page.
        """
        record = record_for(decision_id, token)
        if record is None or token is None:
            return HTMLResponse(_NOT_FOUND_PAGE, status_code=404)
        statement = (reason or "").strip()
        try:
            statement = check_text(statement, multiline=True)  # no control or bidi characters
        except ValueError:
            statement = ""
        valid = kind in ("objection", "human_decision") and 0 < len(statement) <= 2000
        if valid:
            try:
                ctx.reviews.open_case(record, kind=kind, statement=statement)  # type: ignore[arg-type]
            except CaseConflict:
                pass  # the page already shows the open case
        return RedirectResponse(
            f"{ctx.settings.public_base_url}/explain/{decision_id}?token={token}&lang={lang}"
            f"&sent={'1' if valid else 'invalid'}",
            status_code=303,
        )

    @app.post(
        "/v1/decisions/{decision_id}/objections",
        tags=["citizen"],
        status_code=201,
        response_model=CaseOut,
        responses={
            **token_responses,
            409: {"model": ErrorBody, "description": "a case for this decision is already open"},
        },
    )
    def post_objection(
        decision_id: str,
        body: ObjectionIn,
        token: TokenQuery = None,
        x_access_token: TokenHeader = None,
    ) -> JSONResponse:
        """Object to a decision, or ask for a decision by a person (《个人信息保护法》第二十四条).

        Opens a review case; the answer says when it is due. Needs the decision's token.
        """
        presented = token or x_access_token
        if (no := ctx.token_refusal(decision_id, presented)) is not None:
            return no
        record = ctx.store.get_record(decision_id)
        if record is None:
            return error(404, "DECISION_NOT_FOUND", "未找到该决定", f"no decision {decision_id}")
        case = ctx.reviews.open_case(record, kind=body.kind, statement=body.reason)
        log.info("case_opened", case_id=case.id, decision_id=decision_id, kind=case.kind)
        return JSONResponse(case_out(case).model_dump(mode="json"), status_code=201)

    @app.get(
        "/v1/decisions/{decision_id}/cases",
        tags=["citizen"],
        response_model=list[CaseOut],
        responses=token_responses,
    )
    def get_cases(
        decision_id: str, token: TokenQuery = None, x_access_token: TokenHeader = None
    ) -> JSONResponse:
        """The review cases of a decision and their status. Needs the decision's token."""
        presented = token or x_access_token
        if (no := ctx.token_refusal(decision_id, presented)) is not None:
            return no
        cases = ctx.reviews.cases_of(decision_id)
        return JSONResponse([case_out(c, ctx).model_dump(mode="json") for c in cases])

    @app.get(
        "/v1/decisions/{decision_id}/receipt",
        tags=["citizen"],
        responses=token_responses,
    )
    def get_receipt(
        decision_id: str, token: TokenQuery = None, x_access_token: TokenHeader = None
    ) -> JSONResponse:
        """The decision's inclusion receipt in the signed log. Needs the decision's token."""
        presented = token or x_access_token
        if (no := ctx.token_refusal(decision_id, presented)) is not None:
            return no
        receipt = ctx.store.receipt(decision_id)
        if receipt is None:
            return error(404, "DECISION_NOT_FOUND", "未找到该决定", f"no decision {decision_id}")
        return JSONResponse(receipt.model_dump(mode="json"))


def review_view(case: ReviewCaseRow, ctx: AppContext) -> Any:
    from explanations.page import ReviewView

    return ReviewView(
        case_id=case.id,
        kind=case.kind,  # type: ignore[arg-type]
        status=case.status,  # type: ignore[arg-type]
        opened_at=case.opened_at,
        due_on=case.due_on,
        resolved_at=case.resolved_at,
        outcome=case.resolution_outcome,
        reason=case.resolution_reason,
        human_decision_id=case.human_decision_id,
        human_decision_token=ctx.token_for(case.human_decision_id)
        if case.human_decision_id
        else None,
    )
