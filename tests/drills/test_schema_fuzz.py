"""Fault drill 7: schemathesis generates requests from our OpenAPI schema against the live
ASGI server: no server error, no response off the schema."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.drills.test_fault_drills import SCALE

pytestmark = pytest.mark.django_db(transaction=True)
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance," + (
    "response_schema_conformance"
)


def test_drill_7_generated_requests_get_no_5xx_and_stay_on_the_schema(asgi_server, policy, api_key):
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if cli is None:
        pytest.skip("schemathesis is not installed (it is in requirements.txt's dev block)")
    examples = max(50, int(500 * SCALE))
    done = subprocess.run(  # noqa: S603 - our own tool and server, fixed arguments
        [
            cli,
            "run",
            f"{asgi_server}/api/schema/",
            "--header",
            f"Authorization: Bearer {api_key[1]}",
            "--max-examples",
            str(examples),
            "--checks",
            CHECKS,
            "--seed",
            "7",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_COLOR": "1"},
    )
    summary = re.search(r"(\d+) generated, (.*)", done.stdout)
    print(f"\ndrill 7: {summary.group(0) if summary else done.stdout[-2000:]}")
    assert done.returncode == 0, done.stdout[-4000:]
