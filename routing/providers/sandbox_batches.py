"""The sandbox's Files and Batches (the Batch API), for batch jobs: uploads, batches that
finish after a few polls, and knobs for tests (hold, final status, failing items)."""

import hashlib
import json
import threading
import time

from routing.providers.sandbox_chat import answer, state, strict_refusal
from routing.providers.sandbox_wire import api_error


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
            refused = strict_refusal(line["body"])
            if custom_id in self.fail_ids or refused is not None:
                error = {"message": "sandbox: item failed", "type": "invalid_request_error"}
                if refused is not None:
                    error.update(param=refused[0], code=refused[1], message=refused[2])
                body = {"error": error}
                response = {"status_code": 400, "request_id": request_id, "body": body}
                errors.append({"id": f"batch_req_{index}", "custom_id": custom_id,
                               "response": response, "error": None})  # fmt: skip
                continue
            body = line["body"]
            content, usage = answer(body, body["model"], body["messages"], batch=True)
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
            return api_error(status, f"sandbox injected {fault}", kind, "sandbox_fault")
    if parts[1] == "files":
        if method == "POST" and len(parts) == 2:
            content = _multipart_file(headers.get("content-type", ""), raw_body)
            if content is None:
                return api_error(400, "No file part", "invalid_request_error", "invalid_body")
            return _json_response(200, batches.upload(content))
        if method == "GET" and len(parts) == 4 and parts[3] == "content":
            content = batches.files.get(parts[2])
            if content is None:
                return api_error(404, "No such file", "invalid_request_error", "not_found")
            return 200, {"content-type": "application/octet-stream"}, content
    if parts[1] == "batches":
        if method == "POST" and len(parts) == 2:
            status, body = batches.create(json.loads(raw_body or b"{}"))
            if status != 200:
                return api_error(status, body["message"], "invalid_request_error", body["code"])
            return _json_response(200, body)
        if method == "GET" and len(parts) == 2:
            data = batches.list()
            return _json_response(200, {"object": "list", "data": data, "has_more": False})
        if method == "GET" and len(parts) == 3:
            batch = batches.retrieve(parts[2])
            if batch is None:
                return api_error(404, "No such batch", "invalid_request_error", "not_found")
            return _json_response(200, batch)
    return api_error(404, f"Unknown path {path}", "invalid_request_error", "not_found")
