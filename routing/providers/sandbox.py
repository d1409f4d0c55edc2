"""Offline sandbox upstream: speaks OpenAI's chat-completions wire format, deterministically.

A development and test aid, never a production dependency: the provider imports it only
when UPSTREAM_MODE is "sandbox". It serves two ways through the same handler: as an httpx
transport inside the process (the SDK's own code path, no socket) and as a small HTTP server
on 127.0.0.1 (`python -m routing.providers.sandbox --port 8765`), so timeouts and errors are real.

It imitates provider prefix caching (a prompt prefix of 1,024 tokens or more seen recently is
reported as cached, in 128-token steps) and takes injected faults: "429", "500", "timeout",
"malformed", applied one per request in the order given. As a judge (shadow evaluation) it
gives synthetic verdicts, seeded, as two models of different strength would earn them.
"""

import argparse
import hashlib
import json
import random
import sys
import threading
import time
from collections import OrderedDict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from routing import tokens
from routing.providers.sandbox_judge import judge_reply
from routing.quality import JUDGE_MARKER

FAULTS = ("400", "429", "500", "503", "reset", "timeout", "malformed", "midstream")
MIDSTREAM_BREAK_AFTER = 2  # content chunks sent before an injected mid-stream break
CACHE_MIN_TOKENS = 1024
CACHE_STEP_TOKENS = 128
CACHE_CAPACITY = 10_000
HTTP_TIMEOUT_SLEEP_S = 5.0  # a bounded hang: longer than any test's client timeout
WORDS = (
    "thanks for reaching out here is a clear answer with the key points first then the detail "
    "you asked for plus one practical next step to take today"
).split()


class SandboxTimeout(Exception):
    """Raised by the handler for an injected timeout; each transport turns it into its own."""


class SandboxReset(Exception):
    """Raised by the handler for an injected connection reset."""


class SandboxStream:
    """A streamed answer: SSE events to send one by one, maybe broken after some."""

    def __init__(self, events: list[bytes], *, break_after: int | None, chunk_delay_s: float):
        self.events = events
        self.break_after = break_after
        self.chunk_delay_s = chunk_delay_s


class SandboxState:
    """Injected faults, latency and the imitated prompt-prefix cache, shared by threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: deque[str] = deque()
        self._prefixes: OrderedDict[str, None] = OrderedDict()
        self.latency_ms = 0
        self.chunk_delay_ms = 0
        self.calls = 0
        self.calls_by_model: dict[str, int] = {}
        self.last_request: dict = {}
        self._random_rate = 0.0
        self._random_kinds: tuple[str, ...] = ()
        self._rng = random.Random(0)  # noqa: S311 - fault drills, not security
        self._model_faults: dict[str, str] = {}
        self.judge_seed = 0  # another seed draws another sample of judge verdicts

    def inject(self, *faults: str) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown sandbox faults: {sorted(unknown)}")
        with self._lock:
            self._faults.extend(faults)

    def fail_randomly(self, rate: float, kinds: tuple[str, ...], seed: int = 0) -> None:
        """Fail a share of all requests with faults drawn from `kinds` (fault drills)."""
        unknown = set(kinds) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown sandbox faults: {sorted(unknown)}")
        with self._lock:
            self._random_rate, self._random_kinds = rate, tuple(kinds)
            self._rng = random.Random(seed)  # noqa: S311

    def fail_model(self, model: str, fault: str | None) -> None:
        """Fail every call to one model with `fault` (None: heal it): one model down, the
        others healthy."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown sandbox fault: {fault}")
        with self._lock:
            if fault is None:
                self._model_faults.pop(model, None)
            else:
                self._model_faults[model] = fault

    def reset(self) -> None:
        with self._lock:
            self._random_rate, self._random_kinds = 0.0, ()
            self._model_faults.clear()
            self._faults.clear()
            self._prefixes.clear()
            self.calls = 0
            self.calls_by_model = {}
            self.judge_seed = 0

    def next_fault(self, model: str = "") -> str | None:
        with self._lock:
            self.calls += 1
            if model in self._model_faults:
                return self._model_faults[model]
            if self._faults:
                return self._faults.popleft()
            if self._random_rate and self._rng.random() < self._random_rate:
                return self._rng.choice(self._random_kinds)
            return None

    def cached_prefix_tokens(self, token_ids: list[int]) -> int:
        """Return the longest recently seen prefix length, and remember this prompt's."""
        steps = range(CACHE_MIN_TOKENS, len(token_ids) + 1, CACHE_STEP_TOKENS)
        digests = {n: hashlib.sha256(str(token_ids[:n]).encode()).hexdigest() for n in steps}
        with self._lock:
            cached = max((n for n, d in digests.items() if d in self._prefixes), default=0)
            for digest in digests.values():
                self._prefixes[digest] = None
                self._prefixes.move_to_end(digest)
            while len(self._prefixes) > CACHE_CAPACITY:
                self._prefixes.popitem(last=False)
        return cached


state = SandboxState()


def _error(
    status: int, message: str, kind: str, code: str, param: str | None = None
) -> tuple[int, dict, bytes]:
    body = {"error": {"message": message, "type": kind, "code": code, "param": param}}
    return status, {"content-type": "application/json"}, json.dumps(body).encode()


# What OpenAI's chat completions accept for the numeric sampling parameters.
PARAMETER_RANGES = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "presence_penalty": (-2, 2),
    "frequency_penalty": (-2, 2),
}


def _refused_parameter(body: dict) -> tuple[str, str] | None:
    """(parameter, message) of the first parameter a real model would refuse, or None."""
    for name, (low, high) in PARAMETER_RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not low <= value <= high:
            return name, f"Invalid '{name}': expected a number from {low} to {high}, got {value!r}."
    return None


def handle(path: str, raw_body: bytes) -> tuple[int, dict, bytes | SandboxStream]:
    """Answer one request: (status, headers, body or stream). Raises SandboxTimeout."""
    if not path.endswith("/chat/completions"):
        return _error(404, f"Unknown path {path}", "invalid_request_error", "not_found")
    try:
        body = json.loads(raw_body)
        model = body["model"]
        messages = body["messages"]
    except (ValueError, KeyError, TypeError):
        return _error(400, "Malformed request body", "invalid_request_error", "invalid_body")

    state.last_request = body
    state.calls_by_model[model] = state.calls_by_model.get(model, 0) + 1
    fault = state.next_fault(model)
    refused = _refused_parameter(body)
    if refused is not None:  # as a real model validates its parameters
        param, message = refused
        return _error(400, message, "invalid_request_error", "invalid_value", param)
    if fault == "429":
        status, headers, payload = _error(429, "Rate limit reached", "requests", "rate_limit")
        return status, {**headers, "retry-after": "0"}, payload
    if fault == "500":
        return _error(500, "The server had an error", "server_error", "server_error")
    if fault == "503":
        return _error(503, "The engine is overloaded", "server_error", "overloaded")
    if fault == "400":
        return _error(400, "Invalid request", "invalid_request_error", "invalid_value")
    if fault == "timeout":
        raise SandboxTimeout
    if fault == "reset":
        raise SandboxReset
    if fault == "malformed":
        return 200, {"content-type": "application/json"}, b'{"id": "chatcmpl-broken", "choi'
    if body.get("stream") and fault == "midstream":
        return _stream(body, model, messages, break_after=MIDSTREAM_BREAK_AFTER)
    if body.get("stream"):
        return _stream(body, model, messages, break_after=None)

    content, usage = _answer(body, model, messages)
    response = {
        "id": "",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "sandbox",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage,
    }
    response["id"] = "chatcmpl-sbx-" + hashlib.sha256(content.encode()).hexdigest()[:24]
    headers = {"content-type": "application/json", "x-sandbox": "1"}
    return 200, headers, json.dumps(response).encode()


def _answer(body: dict, model: str, messages: list) -> tuple[str, dict]:
    """Return the deterministic answer text and its usage block."""
    prompt = "".join(f"{m.get('role')}\n{m.get('content')}\n" for m in messages)
    prompt_tokens, _ = tokens.count_message_tokens(
        [{"content": str(m.get("content", ""))} for m in messages]
    )
    token_ids = tokens.encode(prompt)
    cached = state.cached_prefix_tokens(token_ids) if token_ids else 0
    digest = hashlib.sha256(f"{model}\n{prompt}".encode()).digest()
    limit = int(body.get("max_completion_tokens") or body.get("max_tokens") or 4096)
    n_words = min(12 + digest[0] % 60, limit)
    words = [WORDS[(digest[i % 32] + i) % len(WORDS)] for i in range(n_words)]
    content = f"[sandbox {model}] " + " ".join(words) + "."
    if messages and JUDGE_MARKER in str(messages[0].get("content", "")):
        content = judge_reply(str(messages[-1].get("content", "")), seed=state.judge_seed)
    completion_tokens = min(tokens.count_text_tokens(content)[0], limit)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": min(cached, prompt_tokens)},
    }
    return content, usage


def _stream(
    body: dict, model: str, messages: list, *, break_after: int | None
) -> tuple[int, dict, SandboxStream]:
    """Return the answer as OpenAI chunks: role, a few words each, finish, usage, [DONE]."""
    content, usage = _answer(body, model, messages)
    chunk_id = "chatcmpl-sbx-" + hashlib.sha256(content.encode()).hexdigest()[:24]
    created = int(time.time())

    def event(delta: dict, finish: str | None = None, with_usage: bool = False) -> bytes:
        chunk = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": []
            if with_usage
            else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if with_usage:
            chunk["usage"] = usage
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    words = content.split(" ")
    pieces = [" ".join(words[i : i + 4]) + " " for i in range(0, len(words), 4)]
    pieces[-1] = pieces[-1].rstrip()
    events = [event({"role": "assistant", "content": ""})]
    events += [event({"content": piece}) for piece in pieces]
    events.append(event({}, finish="stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(event({}, with_usage=True))
    events.append(b"data: [DONE]\n\n")
    stream = SandboxStream(
        events,
        break_after=None if break_after is None else break_after + 1,
        chunk_delay_s=state.chunk_delay_ms / 1000,
    )
    return 200, {"content-type": "text/event-stream", "x-sandbox": "1"}, stream


def transport():
    """Return an httpx transport (sync and async) that answers in-process."""
    import asyncio

    import httpx2

    async def stream_events(stream: SandboxStream, request):
        for index, payload in enumerate(stream.events):
            if stream.break_after is not None and index >= stream.break_after:
                raise httpx2.RemoteProtocolError("sandbox injected mid-stream break")
            if index and stream.chunk_delay_s:
                await asyncio.sleep(stream.chunk_delay_s)
            yield payload

    def answer(request: "httpx2.Request") -> "httpx2.Response":
        batch_api = handle_batch_api(
            request.method, request.url.path, dict(request.headers), request.read()
        )
        if batch_api is not None:
            return httpx2.Response(batch_api[0], headers=batch_api[1], content=batch_api[2])
        try:
            status, headers, payload = handle(request.url.path, request.read())
        except SandboxTimeout:
            raise httpx2.ReadTimeout("sandbox injected timeout", request=request) from None
        except SandboxReset:
            raise httpx2.RemoteProtocolError("sandbox injected reset", request=request) from None
        if isinstance(payload, SandboxStream):
            content = stream_events(payload, request)
            return httpx2.Response(status, headers=headers, content=content)
        return httpx2.Response(status, headers=headers, content=payload)

    async def answer_later(request: "httpx2.Request", delay_s: float) -> "httpx2.Response":
        await asyncio.sleep(delay_s)  # never block the event loop of an async caller
        return answer(request)

    def respond(request: "httpx2.Request"):
        delay_s = state.latency_ms / 1000
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            time.sleep(delay_s)
            return answer(request)
        return answer_later(request, delay_s)

    return httpx2.MockTransport(respond)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        if self.path == "/_sandbox/faults":
            state.inject(*json.loads(raw or b"{}").get("faults", []))
            self._send(204, {}, b"")
            return
        batch_api = handle_batch_api("POST", self.path, dict(self.headers.items()), raw)
        if batch_api is not None:
            self._send(*batch_api)
            return
        time.sleep(state.latency_ms / 1000)
        try:
            status, headers, payload = handle(self.path, raw)
        except SandboxTimeout:
            time.sleep(HTTP_TIMEOUT_SLEEP_S)
            status, headers, payload = _error(504, "sandbox timeout", "server_error", "timeout")
        except SandboxReset:
            self.close_connection = True
            self.connection.close()  # no answer at all: the client sees a reset
            return
        if isinstance(payload, SandboxStream):
            self._send_stream(status, headers, payload)
        else:
            self._send(status, headers, payload)

    def _send_stream(self, status: int, headers: dict, stream: SandboxStream) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for index, payload in enumerate(stream.events):
            if stream.break_after is not None and index >= stream.break_after:
                self.close_connection = True
                return  # cut the connection without the closing chunk
            if index and stream.chunk_delay_s:
                time.sleep(stream.chunk_delay_s)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def do_GET(self) -> None:  # noqa: N802
        batch_api = handle_batch_api("GET", self.path, dict(self.headers.items()), b"")
        if batch_api is not None:
            self._send(*batch_api)
            return
        if self.path.endswith("/models"):
            body = {"object": "list", "data": [{"id": "sandbox", "object": "model"}]}
            self._send(200, {"content-type": "application/json"}, json.dumps(body).encode())
        else:
            self._send(*_error(404, "not found", "invalid_request_error", "not_found"))

    def _send(self, status: int, headers: dict, payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # quiet in tests
        return


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client that gave up (its timeout) closes the socket under us: expected here.
        if not isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            super().handle_error(request, client_address)


def serve(host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Return a started sandbox HTTP server (daemon thread); port 0 picks a free one."""
    server = _QuietServer((host, port), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="sandbox-http", daemon=True).start()
    return server


# --- Files and Batches (the Batch API), for batch jobs -----------------------------------


class SandboxBatches:
    """Uploaded files and batches, with knobs for tests: how many polls a batch takes, hold it
    in progress, its final status, which items fail, how many an expired batch delivered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.files: dict[str, bytes] = {}
            self.batches: dict[str, dict] = {}
            self.polls_to_complete = 2  # validating, in_progress, then the final status
            self.hold = False  # keep every batch in_progress until released
            self.outcome = "completed"  # or "failed", "expired", "cancelled"
            self.fail_ids: set[str] = set()  # custom_ids answered with an error line
            self.expire_keep = 0  # items of an expired batch that still got an answer
            self.creates = 0
            self.uploads = 0

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-sbx-{len(self.files) + len(self.batches) + 1:06d}"

    def upload(self, content: bytes) -> dict:
        with self._lock:
            file_id = self._new_id("file")
            self.files[file_id] = content
            self.uploads += 1
        return _file_object(file_id, content, "batch")

    def create(self, body: dict) -> tuple[int, dict]:
        with self._lock:
            if body.get("input_file_id") not in self.files:
                return 404, {"message": "No such file", "code": "not_found"}
            batch_id = self._new_id("batch")
            self.batches[batch_id] = {
                "id": batch_id,
                "object": "batch",
                "endpoint": body.get("endpoint", "/v1/chat/completions"),
                "errors": None,
                "input_file_id": body["input_file_id"],
                "completion_window": body.get("completion_window", "24h"),
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": int(time.time()),
                "expires_at": int(time.time()) + 86_400,
                "metadata": body.get("metadata") or {},
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "_polls": 0,
            }
            self.creates += 1
            return 200, self._public(self.batches[batch_id])

    def retrieve(self, batch_id: str) -> dict | None:
        """Each retrieve is a poll: the batch moves on one step (unless held)."""
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return None
            if batch["status"] in ("validating", "in_progress"):
                batch["_polls"] += 1
                if self.hold or batch["_polls"] < self.polls_to_complete:
                    batch["status"] = "in_progress"
                else:
                    self._finish(batch)
            return self._public(batch)

    def list(self) -> list[dict]:
        with self._lock:
            return [self._public(b) for b in reversed(self.batches.values())]

    @staticmethod
    def _public(batch: dict) -> dict:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def _finish(self, batch: dict) -> None:
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]].splitlines()]
        batch["request_counts"]["total"] = len(lines)
        if self.outcome in ("failed", "cancelled"):
            batch["status"] = self.outcome
            if self.outcome == "failed":
                error = {"code": "invalid_request", "message": "sandbox: batch failed"}
                batch["errors"] = {"object": "list", "data": [{**error, "line": None}]}
            return
        answered = lines[: self.expire_keep] if self.outcome == "expired" else lines
        output, errors = [], []
        for index, line in enumerate(answered):
            custom_id = line["custom_id"]
            request_id = f"req-sbx-{batch['id']}-{index}"
            if custom_id in self.fail_ids:
                error = {"message": "sandbox: item failed", "type": "invalid_request_error"}
                body = {"error": error}
                response = {"status_code": 400, "request_id": request_id, "body": body}
                errors.append({"id": f"batch_req_{index}", "custom_id": custom_id,
                               "response": response, "error": None})  # fmt: skip
                continue
            body = line["body"]
            content, usage = _answer(body, body["model"], body["messages"])
            completion = {
                "id": "chatcmpl-sbx-" + hashlib.sha256(content.encode()).hexdigest()[:24],
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
            response = {"status_code": 200, "request_id": request_id, "body": completion}
            output.append({"id": f"batch_req_{index}", "custom_id": custom_id,
                           "response": response, "error": None})  # fmt: skip
        for key, rows in (("output_file_id", output), ("error_file_id", errors)):
            if rows:
                file_id = self._new_id("file")
                self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[key] = file_id
        batch["request_counts"]["completed"] = len(output)
        batch["request_counts"]["failed"] = len(errors)
        batch["status"] = "expired" if self.outcome == "expired" else "completed"


batches = SandboxBatches()


def _file_object(file_id: str, content: bytes, purpose: str) -> dict:
    return {
        "id": file_id,
        "object": "file",
        "bytes": len(content),
        "created_at": int(time.time()),
        "filename": "batch.jsonl",
        "purpose": purpose,
        "status": "processed",
    }


def _multipart_file(content_type: str, raw_body: bytes) -> bytes | None:
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw_body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True)
    return None


def _json_response(status: int, body: dict) -> tuple[int, dict, bytes]:
    return status, {"content-type": "application/json"}, json.dumps(body).encode()


def handle_batch_api(
    method: str, path: str, headers: dict, raw_body: bytes
) -> tuple[int, dict, bytes] | None:
    """Answer a Files or Batches request, or None when the path is not one of them.

    Uploads and creates take injected faults ("429", "500", "503", "400") like completions."""
    path = path.split("?", 1)[0]
    headers = {k.lower(): v for k, v in headers.items()}
    parts = path.strip("/").split("/")  # ["v1", "files", ...] or ["v1", "batches", ...]
    if len(parts) < 2 or parts[0] != "v1" or parts[1] not in ("files", "batches"):
        return None
    if method == "POST" and len(parts) == 2:
        fault = state.next_fault()
        if fault in ("429", "500", "503", "400"):
            status = int(fault)
            kind = "invalid_request_error" if status == 400 else "server_error"
            return _error(status, f"sandbox injected {fault}", kind, "sandbox_fault")
    if parts[1] == "files":
        if method == "POST" and len(parts) == 2:
            content = _multipart_file(headers.get("content-type", ""), raw_body)
            if content is None:
                return _error(400, "No file part", "invalid_request_error", "invalid_body")
            return _json_response(200, batches.upload(content))
        if method == "GET" and len(parts) == 4 and parts[3] == "content":
            content = batches.files.get(parts[2])
            if content is None:
                return _error(404, "No such file", "invalid_request_error", "not_found")
            return 200, {"content-type": "application/octet-stream"}, content
    if parts[1] == "batches":
        if method == "POST" and len(parts) == 2:
            status, body = batches.create(json.loads(raw_body or b"{}"))
            if status != 200:
                return _error(status, body["message"], "invalid_request_error", body["code"])
            return _json_response(200, body)
        if method == "GET" and len(parts) == 2:
            data = batches.list()
            return _json_response(200, {"object": "list", "data": data, "has_more": False})
        if method == "GET" and len(parts) == 3:
            batch = batches.retrieve(parts[2])
            if batch is None:
                return _error(404, "No such batch", "invalid_request_error", "not_found")
            return _json_response(200, batch)
    return _error(404, f"Unknown path {path}", "invalid_request_error", "not_found")


def main() -> None:
    """Serve until interrupted. Called at the end of the module: run as a script, the module
    must be whole before the first request (the handler uses names defined below serve())."""
    parser = argparse.ArgumentParser(description="Serve the sandbox upstream on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--chunk-delay-ms", type=int, default=0)
    parser.add_argument("--judge-seed", type=int, default=0, help="seed of the judge's verdicts")
    args = parser.parse_args()
    state.latency_ms = args.latency_ms
    state.chunk_delay_ms = args.chunk_delay_ms
    state.judge_seed = args.judge_seed
    server = serve(port=args.port)
    print(f"sandbox upstream on http://127.0.0.1:{server.server_port}/v1", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
