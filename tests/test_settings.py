"""Deploy settings, checked the way an operator meets them: `manage.py` in a fresh process."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = {
    "ENVIRONMENT": "production",
    "SECRET_KEY": "a-long-random-production-secret-" + "x" * 40,
    "DATABASE_URL": "postgres://router@127.0.0.1:5432/router",
    "ALLOWED_HOSTS": "router.example.com",
    "OPENAI_API_KEY": "sk-not-a-real-key",
}


def _manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION and k != "DEBUG"}
    return subprocess.run(  # noqa: S603 - our own manage.py, fixed arguments
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_its_secrets():
    done = _manage({"ENVIRONMENT": "production"}, "check")
    assert done.returncode != 0
    assert "production needs these settings: SECRET_KEY, DATABASE_URL, ALLOWED_HOSTS" in (
        done.stderr
    )
    assert "OPENAI_API_KEY or OPENAI_BASE_URL" in done.stderr


def test_check_deploy_is_clean_with_production_settings():
    done = _manage(PRODUCTION, "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout
