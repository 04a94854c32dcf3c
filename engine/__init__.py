"""The ruleset language, its compiler to durable_rules, and evaluation. Pure: no I/O but reading ruleset files."""

from engine._durable import durable_version, get_engine
from engine.catalog import RulesetCatalog, RulesetProblem
from engine.decision import (
    ComparedValue,
    CriterionResult,
    CriterionStatus,
    Evaluation,
    Outcome,
    Reason,
    ReasonCode,
    application_env,
    evaluate,
)
from engine.errors import (
    EngineError,
    EngineFault,
    ExpressionError,
    NoVersionInForce,
    RulesetError,
    RulesetInvalid,
    ServiceUnavailable,
    UnknownService,
)
from engine.ruleset import Ruleset, load_ruleset, parse_ruleset

__all__ = [
    "ComparedValue",
    "CriterionResult",
    "CriterionStatus",
    "EngineError",
    "EngineFault",
    "Evaluation",
    "ExpressionError",
    "NoVersionInForce",
    "Outcome",
    "Reason",
    "ReasonCode",
    "Ruleset",
    "RulesetCatalog",
    "RulesetError",
    "RulesetInvalid",
    "RulesetProblem",
    "ServiceUnavailable",
    "UnknownService",
    "application_env",
    "durable_version",
    "evaluate",
    "get_engine",
    "load_ruleset",
    "parse_ruleset",
]
