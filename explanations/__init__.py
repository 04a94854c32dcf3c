"""Explanation records: the versioned model, hash-chained store, verification, replay and rendering."""

from explanations.record import (
    RECORD_SCHEMA,
    DataUse,
    DecisionResponse,
    EngineInfo,
    EvidenceItem,
    ExplanationRecordV1,
    LegalBasisRef,
    MaskedApplicant,
    OutputColumn,
    RemedyNotice,
    Unsealed,
    canonical_json,
    decision_response,
    is_personal_field,
    pseudonymize,
    remedy_notice,
    text_hash,
)
from explanations.render import render_text
from explanations.replay import ReplayResult, replay
from explanations.store import DecisionStore, IdempotencyConflict, StoredDecision, VerifyProblem

__all__ = [
    "RECORD_SCHEMA",
    "DataUse",
    "DecisionResponse",
    "DecisionStore",
    "EngineInfo",
    "EvidenceItem",
    "ExplanationRecordV1",
    "IdempotencyConflict",
    "LegalBasisRef",
    "MaskedApplicant",
    "OutputColumn",
    "RemedyNotice",
    "ReplayResult",
    "StoredDecision",
    "Unsealed",
    "VerifyProblem",
    "canonical_json",
    "decision_response",
    "is_personal_field",
    "pseudonymize",
    "remedy_notice",
    "render_text",
    "replay",
    "text_hash",
]
