"""Parameter compatibility: the pure shaping of a request for one model's rules."""

import pytest

from routing.providers.compat import (
    NO_RULES,
    ParamRules,
    param_rules_from_snapshot,
    request_for_model,
)

BASE = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
NEW_LIMIT = ParamRules(token_limit_param="max_completion_tokens")
REASONING = ParamRules(fixed_temperature=1.0)


@pytest.mark.parametrize(
    ("params", "rules", "shaped", "changes"),
    [
        # no rules: what the old models took goes through untouched
        (
            {"max_tokens": 50, "temperature": 0.2, "top_p": 0.5},
            NO_RULES,
            {"max_tokens": 50, "temperature": 0.2, "top_p": 0.5},
            (),
        ),
        # the output limit renamed either way, to the name the model takes
        (
            {"max_tokens": 50},
            NEW_LIMIT,
            {"max_completion_tokens": 50},
            ("renamed:max_tokens->max_completion_tokens",),
        ),
        (
            {"max_completion_tokens": 50},
            ParamRules(),
            {"max_tokens": 50},
            ("renamed:max_completion_tokens->max_tokens",),
        ),
        ({"max_completion_tokens": 50}, NEW_LIMIT, {"max_completion_tokens": 50}, ()),
        # a fixed temperature: another value is replaced, the same one kept, top_p dropped
        (
            {"temperature": 0.2, "top_p": 0.9},
            REASONING,
            {"temperature": 1.0},
            ("set:temperature=1", "dropped:top_p"),
        ),
        ({"temperature": 1}, REASONING, {"temperature": 1}, ()),
        ({}, REASONING, {}, ()),
        # parameters the model does not take are dropped, absent ones ignored
        (
            {"presence_penalty": 0.5, "seed": 7},
            ParamRules(unsupported_params=("presence_penalty", "logprobs")),
            {"seed": 7},
            ("dropped:presence_penalty",),
        ),
        # a default reasoning effort is sent unless the caller chose one
        (
            {},
            ParamRules(reasoning_effort="low"),
            {"reasoning_effort": "low"},
            ("set:reasoning_effort=low",),
        ),
        (
            {"reasoning_effort": "high"},
            ParamRules(reasoning_effort="low"),
            {"reasoning_effort": "high"},
            (),
        ),
    ],
)
def test_request_is_shaped_by_each_rule(params, rules, shaped, changes):
    # given a request and a model's rules
    request = {**BASE, **params}
    # when
    result, made = request_for_model(request, rules)
    # then
    assert result == {**BASE, **shaped}
    assert made == changes


def test_shaping_leaves_the_callers_params_alone():
    request = {**BASE, "max_tokens": 50}
    request_for_model(request, NEW_LIMIT)
    assert request == {**BASE, "max_tokens": 50}


def test_rules_from_a_snapshot_without_the_fields_change_nothing():
    # given a snapshot written before the rules existed, and one with them
    models = {
        "gpt-4o": {"name": "gpt-4o"},
        "gpt-5": {
            "token_limit_param": "max_completion_tokens",
            "fixed_temperature": 1.0,
            "unsupported_params": ["logprobs"],
            "reasoning_effort": "low",
        },
    }
    # when
    rules = param_rules_from_snapshot(models)
    # then
    assert rules["gpt-4o"] == NO_RULES
    assert rules["gpt-5"] == ParamRules("max_completion_tokens", 1.0, ("logprobs",), "low")
