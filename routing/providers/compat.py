"""Parameter compatibility: a request's parameters reshaped into the form one model accepts.

Newer models refuse parameters older ones took (`max_tokens` instead of
`max_completion_tokens`, a temperature other than the default), so the body is shaped for the
model actually called, fallbacks included, just before it is sent. The rules come from the
model's profile, through the policy snapshot.
"""

import threading
from collections.abc import Mapping
from dataclasses import dataclass

TOKEN_LIMIT_PARAMS = ("max_tokens", "max_completion_tokens")
OLD_TOKEN_LIMIT_PARAM = TOKEN_LIMIT_PARAMS[0]  # what every model took before the rename


@dataclass(frozen=True)
class ParamRules:
    """How one model wants a request's parameters; the defaults change nothing."""

    token_limit_param: str = OLD_TOKEN_LIMIT_PARAM
    fixed_temperature: float | None = None  # the only temperature it takes; top_p not at all
    unsupported_params: tuple[str, ...] = ()
    reasoning_effort: str = ""  # sent when the caller did not choose one; blank: never


NO_RULES = ParamRules()


def request_for_model(params: Mapping, rules: ParamRules) -> tuple[dict, tuple[str, ...]]:
    """Return the parameters shaped by the model's rules, and a code for each change made."""
    shaped = dict(params)
    changes: list[str] = []
    for name in TOKEN_LIMIT_PARAMS:
        if name != rules.token_limit_param and name in shaped:
            value = shaped.pop(name)
            shaped.setdefault(rules.token_limit_param, value)
            changes.append(f"renamed:{name}->{rules.token_limit_param}")
    if rules.fixed_temperature is not None:
        temperature = shaped.get("temperature")
        if temperature is not None and temperature != rules.fixed_temperature:
            shaped["temperature"] = rules.fixed_temperature
            changes.append(f"set:temperature={rules.fixed_temperature:g}")
        # A model with a fixed temperature samples its own way: top_p is refused too.
        if shaped.get("top_p") not in (None, 1):
            del shaped["top_p"]
            changes.append("dropped:top_p")
    for name in rules.unsupported_params:
        if name in shaped:
            del shaped[name]
            changes.append(f"dropped:{name}")
    if rules.reasoning_effort and "reasoning_effort" not in shaped:
        shaped["reasoning_effort"] = rules.reasoning_effort
        changes.append(f"set:reasoning_effort={rules.reasoning_effort}")
    return shaped, tuple(changes)


# The rules of the policy this process routes with, by model name: set when the latest policy
# is loaded (routing.selectors), read on every call. Replaced whole, never edited in place.
_lock = threading.Lock()
_rules: Mapping[str, ParamRules] = {}


def param_rules_set(rules: Mapping[str, ParamRules]) -> None:
    """Make these the rules of every model (the latest policy's)."""
    global _rules
    with _lock:
        _rules = dict(rules)


def param_rules_for(model_name: str) -> ParamRules:
    """Return the model's rules; a model the policy does not know gets none."""
    return _rules.get(model_name, NO_RULES)


def param_rules_from_snapshot(models: Mapping[str, Mapping]) -> dict[str, ParamRules]:
    """Return each model's rules from a policy snapshot's "models" section."""
    return {
        name: ParamRules(
            token_limit_param=data.get("token_limit_param") or OLD_TOKEN_LIMIT_PARAM,
            fixed_temperature=data.get("fixed_temperature"),
            unsupported_params=tuple(data.get("unsupported_params") or ()),
            reasoning_effort=data.get("reasoning_effort") or "",
        )
        for name, data in models.items()
    }
