"""IAM policy evaluation for the parts of the policy language the stack uses.

Identity-based policies only: an explicit Deny wins, then any Allow, else the request is denied.
Action/NotAction (case-insensitive, `*` and `?`), Resource/NotResource (case-sensitive, `*`
and `?`), and Condition with the operators below (with `IfExists` and the `ForAllValues:` /
`ForAnyValue:` set operators). An operator this module does not know raises PolicyError: a
policy it cannot read is never treated as allowing anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

ConditionValues = Mapping[str, Sequence[str]]


class PolicyError(ValueError):
    """The policy uses a part of the language the local evaluator does not implement."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # The statement that decided (its Sid, or its index), empty for an implicit deny.
    statement: str = ""
    explicit_deny: bool = False


@dataclass(frozen=True)
class Request:
    """One authorization: an action on a resource ARN ("*" for actions with no resource-level
    permissions), with the request's condition keys (lower-cased names, values as strings)."""

    action: str
    resource: str
    context: ConditionValues = field(default_factory=dict)


@lru_cache(maxsize=4096)
def _pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    # IAM wildcards: * any run of characters (including none, across ":" and "/"), ? one char.
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.compile(f"^{regex}$", (re.IGNORECASE if ignore_case else 0) | re.DOTALL)


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return _pattern(pattern, ignore_case).match(value) is not None


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches_any(patterns: Any, value: str, *, ignore_case: bool) -> bool:
    return any(wildcard_match(str(p), value, ignore_case=ignore_case) for p in _listed(patterns))


def _string_equals(policy: str, value: str) -> bool:
    return policy == value


def _numeric(compare: Any) -> Any:
    def check(policy: str, value: str) -> bool:
        try:
            return bool(compare(float(value), float(policy)))
        except ValueError:
            return False

    return check


# Positive operators: name -> (policy value, request value) -> matched.
_POSITIVE = {
    "StringEquals": _string_equals,
    "StringEqualsIgnoreCase": lambda p, v: p.lower() == v.lower(),
    "StringLike": lambda p, v: wildcard_match(p, v),
    "ArnEquals": _string_equals,
    "ArnLike": lambda p, v: wildcard_match(p, v),
    "Bool": lambda p, v: p.lower() == v.lower(),
    "NumericEquals": _numeric(lambda v, p: v == p),
    "NumericLessThan": _numeric(lambda v, p: v < p),
    "NumericLessThanEquals": _numeric(lambda v, p: v <= p),
    "NumericGreaterThan": _numeric(lambda v, p: v > p),
    "NumericGreaterThanEquals": _numeric(lambda v, p: v >= p),
}
# Negated operators: true when no policy value matches (and when the key is absent).
_NEGATED = {
    "StringNotEquals": _string_equals,
    "StringNotEqualsIgnoreCase": _POSITIVE["StringEqualsIgnoreCase"],
    "StringNotLike": _POSITIVE["StringLike"],
    "ArnNotEquals": _string_equals,
    "ArnNotLike": _POSITIVE["ArnLike"],
    "NumericNotEquals": _POSITIVE["NumericEquals"],
}


def _condition_holds(operator: str, key: str, policy_values: Any, context: ConditionValues) -> bool:
    values = [str(v).lower() if isinstance(v, bool) else str(v) for v in _listed(policy_values)]
    request_values = context.get(key.lower())
    set_operator = ""
    if ":" in operator:
        set_operator, _, operator = operator.partition(":")
        if set_operator not in {"ForAllValues", "ForAnyValue"}:
            raise PolicyError(f"condition set operator {set_operator!r} is not supported")
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if base == "Null":
        absent = request_values is None or len(request_values) == 0
        return any((value.lower() == "true") == absent for value in values)
    negated = base in _NEGATED
    compare = _NEGATED.get(base) or _POSITIVE.get(base)
    if compare is None:
        raise PolicyError(f"condition operator {operator!r} is not supported")

    def matched(value: str) -> bool:
        return any(compare(policy, value) for policy in values)

    if set_operator == "ForAllValues":
        # Every value in the request must match (vacuously true when the key is absent).
        return all(matched(value) != negated for value in request_values or [])
    if set_operator == "ForAnyValue":
        return any(matched(value) != negated for value in request_values or [])
    if request_values is None:
        return if_exists or negated
    if negated:
        return not any(matched(value) for value in request_values)
    return any(matched(value) for value in request_values)


def conditions_hold(conditions: Mapping[str, Any] | None, context: ConditionValues) -> bool:
    """Every operator block and every key in it must hold (AND); a key's values are ORed."""
    for operator, keys in (conditions or {}).items():
        for key, policy_values in keys.items():
            if not _condition_holds(operator, key, policy_values, context):
                return False
    return True


def _statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    if "Action" in statement:
        if not _matches_any(statement["Action"], request.action, ignore_case=True):
            return False
    elif "NotAction" in statement:
        if _matches_any(statement["NotAction"], request.action, ignore_case=True):
            return False
    else:
        raise PolicyError("a statement needs Action or NotAction")
    if "Resource" in statement:
        if not _matches_any(statement["Resource"], request.resource, ignore_case=False):
            return False
    elif "NotResource" in statement:
        if _matches_any(statement["NotResource"], request.resource, ignore_case=False):
            return False
    else:
        raise PolicyError("a statement needs Resource or NotResource")
    return conditions_hold(statement.get("Condition"), request.context)


def evaluate(statements: Sequence[Mapping[str, Any]], request: Request) -> Decision:
    allowed_by = ""
    for index, statement in enumerate(statements):
        if not _statement_applies(statement, request):
            continue
        name = str(statement.get("Sid") or f"statement {index}")
        effect = statement.get("Effect")
        if effect == "Deny":
            return Decision(False, name, explicit_deny=True)
        if effect != "Allow":
            raise PolicyError(f"{name}: Effect must be Allow or Deny, not {effect!r}")
        allowed_by = allowed_by or name
    return Decision(bool(allowed_by), allowed_by)
