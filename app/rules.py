"""Conditions of `[[queues.rules]]`, in CEL (the Common Expression Language of Kubernetes
admission policies, Envoy and cloud IAM conditions), through `common-expression-language`:
a Rust implementation, compiled once at start-up.

Bounded: a condition sees `payload`, `queue` and `job_id` only, and may not use the list
macros (`all`, `exists`, `exists_one`, `map`, `filter`), so its cost grows with the expression
and the payload's size (at most the webhook's 1 MiB), never with the product of two lists.
Fail closed: a condition that cannot be evaluated for a payload (a missing field, a wrong type)
counts as holding, so the stricter rule applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from app import storable

VARIABLES = frozenset({"payload", "queue", "job_id"})
_MACRO = re.compile(r"\.\s*(all|exists_one|exists|map|filter)\s*\(")
_PAYLOAD = re.compile(r"\bpayload\b")
_PAYLOAD_KEY = re.compile(r"\bpayload\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")


class Outcome(Enum):
    HOLDS = "holds"
    FAILS = "fails"
    UNCHECKED = "unchecked"  # could not be evaluated: counts as holding


@dataclass(frozen=True, eq=False)
class Condition:
    source: str
    _program: Any
    # The payload's top-level keys it reads (`payload.amount`); None: it may read any.
    keys: frozenset[str] | None

    def check(self, variables: Any) -> Outcome:
        """`variables` from `bind`, shared by every condition of one approval."""
        if variables is None:
            return Outcome.UNCHECKED
        try:
            result = self._program.execute(variables)
        except Exception:  # noqa: BLE001 - any failure to evaluate fails closed
            return Outcome.UNCHECKED
        if result is True:
            return Outcome.HOLDS
        return Outcome.FAILS if result is False else Outcome.UNCHECKED


def compile_condition(source: str) -> Condition:
    """The condition, or ValueError saying in one line what is wrong with it."""
    if macro := _MACRO.search(source):
        raise ValueError(
            f"{macro[1]}() is not allowed: conditions compare payload values, and list "
            "macros would let a large payload make every webhook slow"
        )
    import cel  # imported here: it loads a CLI (0.1 s) that a policy without rules is spared

    try:
        program = cel.compile(source)
    except ValueError as e:
        first = str(e).splitlines()[0] if str(e) else "syntax error"
        raise ValueError(f"not valid CEL: {first[:300]}") from None
    unknown = sorted(set(program.variables()) - VARIABLES)
    if unknown:
        raise ValueError(f"unknown variable {', '.join(unknown)}: use payload, queue or job_id")
    named = _PAYLOAD_KEY.findall(source)
    only_keys = len(named) == len(_PAYLOAD.findall(source))  # every use is payload.<key>
    return Condition(source, program, frozenset(named) if only_keys else None)


def keys_read(conditions: list[Condition]) -> frozenset[str] | None:
    """The payload keys any of `conditions` reads; None when one may read any."""
    keys: set[str] = set()
    for condition in conditions:
        if condition.keys is None:
            return None
        keys |= condition.keys
    return frozenset(keys)


def bind(payload: Any, queue: str, job_id: str, keys: frozenset[str] | None = None) -> Any:
    """The variables a condition sees, converted once for all of a queue's conditions; None
    (every condition unchecked) for a payload nested too deep to convert safely. With `keys`,
    only those of the payload's keys are converted: what the conditions read, and no more
    (a 1 MB payload costs what its `amount` costs)."""
    if keys is not None and isinstance(payload, dict):
        payload = {key: payload[key] for key in keys if key in payload}
    if storable.depth(payload) > storable.MAX_DEPTH:  # deeper would overflow its stack
        return None
    import cel

    return cel.Context(variables={"payload": payload, "queue": queue, "job_id": job_id})
