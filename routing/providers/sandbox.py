"""Offline sandbox upstream: a development and test double of an OpenAI-compatible provider.

Never a production dependency: the providers import it only when UPSTREAM_MODE is "sandbox".
It serves two ways through the same handlers: as an httpx transport inside the process (the
SDK's own code path, no socket) and as a small HTTP server on 127.0.0.1 (`python -m
routing.providers.sandbox --port 8765`), so timeouts and errors are real. The answers are
routing.providers.sandbox_chat (chat completions, faults, state), sandbox_batches (Files and
Batches), sandbox_judge (synthetic verdicts) and sandbox_usage (what it answered, served back
as the provider's usage and costs exports for reconciliation).
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from routing.providers.sandbox_batches import handle_batch_api
from routing.providers.sandbox_chat import (
    HTTP_TIMEOUT_SLEEP_S,
    SandboxReset,
    SandboxStream,
    SandboxTimeout,
    handle,
    state,
)
from routing.providers.sandbox_usage import handle_usage_export, usage_log_configure
from routing.providers.sandbox_wire import api_error


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
        export = handle_usage_export(request.method, request.url.raw_path.decode())
        if export is not None:
            return httpx2.Response(export[0], headers=export[1], content=export[2])
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
        if self.path == "/_sandbox/strict":  # {"model": "gpt-5", "strict": true}
            control = json.loads(raw or b"{}")
            state.strict_model(control["model"], bool(control.get("strict", True)))
            self._send(204, {}, b"")
            return
        if self.path == "/_sandbox/usage":
            usage_log_configure(json.loads(raw or b"{}"))
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
            status, headers, payload = api_error(504, "sandbox timeout", "server_error", "timeout")
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
        export = handle_usage_export("GET", self.path)
        if export is not None:
            self._send(*export)
            return
        if self.path.endswith("/models"):
            body = {"object": "list", "data": [{"id": "sandbox", "object": "model"}]}
            self._send(200, {"content-type": "application/json"}, json.dumps(body).encode())
        else:
            self._send(*api_error(404, "not found", "invalid_request_error", "not_found"))

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


def main() -> None:
    """Serve until interrupted (`python -m routing.providers.sandbox`)."""
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
