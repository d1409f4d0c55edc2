"""OpenAPI description of our API-key authentication (drf-spectacular extension)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "routing.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from admin or `manage.py create_api_key`.",
        }


ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string", "nullable": True},
            },
            "required": ["code", "message"],
        }
    },
}
MESSAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "role": {"type": "string", "enum": ["system", "user", "assistant"]},
        "content": {"type": "string"},
    },
    "required": ["role", "content"],
}
USER_MESSAGE_REQUIRED = "At least one message has role user (else 400 missing_user_message)."
COMPLETION_REQUEST = {
    "type": "object",
    "properties": {
        "messages": {
            "type": "array",
            "items": MESSAGE_SCHEMA,
            "minItems": 1,
            "description": USER_MESSAGE_REQUIRED,
        },
        "category": {
            "type": "string",
            "minLength": 1,
            "maxLength": 40,
            "pattern": "^[-a-zA-Z0-9_]+$",
        },
        "complexity": {"type": "number", "minimum": 0, "maximum": 10},
        "critical": {"type": "boolean"},
        "user": {"type": "string", "maxLength": 128},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 128000},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "metadata": {
            "type": "object",
            "maxProperties": 16,
            "additionalProperties": {"type": "string", "maxLength": 512},
        },
        "stream": {"type": "boolean", "default": False},
        "stream_options": {
            "type": "object",
            "properties": {"include_usage": {"type": "boolean"}},
        },
    },
    "required": ["messages"],
}
MONEY = {"type": "string", "format": "decimal", "example": "0.0004500000"}
COMPLETION_RESPONSE = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "content": {"type": "string"},
        "model": {"type": "string"},
        "tier": {"type": "string", "enum": ["mini", "full"]},
        "category": {"type": "string"},
        "complexity": {"type": "number"},
        "critical": {"type": "boolean"},
        "reason": {"type": "string"},
        "reason_text": {"type": "string"},
        "usage": {
            "type": "object",
            "properties": {
                "input_tokens": {"type": "integer"},
                "output_tokens": {"type": "integer"},
                "cached_tokens": {"type": "integer"},
            },
        },
        "latency_ms": {"type": "integer"},
        "cost_usd": MONEY,
        "estimated_cost_usd": MONEY,
        "baseline_cost_usd": MONEY,
        "policy_version": {"type": "integer"},
        "sandbox": {"type": "boolean"},
        "cache_hit": {"type": "boolean"},
    },
}


def error_responses(*statuses: int) -> dict:
    """drf-spectacular `responses` entries: our JSON error body for each status."""
    from drf_spectacular.utils import OpenApiResponse

    return {
        status: OpenApiResponse(response=ERROR_SCHEMA, description="Error") for status in statuses
    }


def _errors(*statuses: int) -> dict:
    return {
        str(status): {
            "description": "Error",
            "content": {"application/json": {"schema": ERROR_SCHEMA}},
        }
        for status in statuses
    }


def completion_paths(result: dict, generator, request, public) -> dict:
    """Describe the async completion endpoint, which drf-spectacular cannot see (it is a
    plain async Django view on the hot path, not a DRF view)."""
    result.setdefault("paths", {})["/api/v1/completions"] = {
        "post": {
            "operationId": "completion_create",
            "summary": "Route one completion, call the chosen model, record it in the ledger.",
            "tags": ["completions"],
            "security": [{"ApiKey": []}],
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 255},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": COMPLETION_REQUEST}},
            },
            "responses": {
                "200": {
                    "description": "The answer with its routing decision, usage and cost; "
                    "with stream=true, server-sent events in OpenAI's chunk format.",
                    "content": {
                        "application/json": {"schema": COMPLETION_RESPONSE},
                        "text/event-stream": {
                            "schema": {
                                "description": "OpenAI chat.completion.chunk objects, then "
                                "[DONE]; an error event if the upstream breaks mid-stream."
                            }
                        },
                    },
                },
                **_errors(400, 401, 409, 413, 415, 422, 429, 502, 503, 504),
            },
        }
    }
    return result
