import pytest


@pytest.fixture(autouse=True)
def _sandbox_upstream(settings):
    """Every test talks to a fresh in-process sandbox, with no SDK retries or latency, and
    starts from an empty cache (Redis in CI outlives test databases, whose ids restart)."""
    from django.core.cache import cache

    from routing.api_key_selectors import api_key_cache_clear
    from routing.circuit import circuit_reset_local
    from routing.inflight import inflight_forgetting_settled
    from routing.providers import sandbox_chat
    from routing.selectors import policy_cache_clear
    from routing.shared_cache import redis_switch_reset

    redis_switch_reset()
    cache.clear()
    settings.UPSTREAM_MODE = "sandbox"
    settings.SANDBOX_LATENCY_MS = 0
    # One attempt per model unless a test asks for more; retries wait (almost) nothing.
    settings.ROUTER_ATTEMPTS_PER_MODEL = 1
    settings.ROUTER_BACKOFF_BASE_S = 0.001
    settings.ROUTER_BACKOFF_MAX_S = 0.01
    # Database work on the test's own connection (in its transaction); asgi_server uses the
    # production threads.
    settings.DATABASE_THREADS = 0
    # Tests make an event loop per call: httpx's clients need no closing when it ends
    # (test_provider runs the production transport, aiohttp, and closes its clients).
    settings.UPSTREAM_HTTP_CLIENT = "httpx"
    sandbox_chat.state.reset()
    policy_cache_clear()
    api_key_cache_clear()
    circuit_reset_local()
    yield
    # A test's in-flight records are forgotten before the next test's Redis calls are counted.
    inflight_forgetting_settled(timeout_s=10)
    sandbox_chat.state.reset()
    policy_cache_clear()


@pytest.fixture
def policy(db):
    """The seeded default policy version."""
    from routing.policy_versions import policy_seed

    return policy_seed()


@pytest.fixture
def api_key(db):
    """An (ApiKey, plaintext) pair."""
    from routing.api_keys import api_key_create

    return api_key_create(name="product")


@pytest.fixture
def api_client(api_key):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key[1]}")
    return client


@pytest.fixture
def http_upstream(settings):
    """The sandbox as a real HTTP server on 127.0.0.1, called in live mode: timeouts, resets
    and HTTP errors are real (an injected timeout hangs 5 s)."""
    from routing.providers import sandbox

    server = sandbox.serve()
    settings.UPSTREAM_MODE = "live"
    settings.OPENAI_BASE_URL = f"http://127.0.0.1:{server.server_port}/v1"
    settings.UPSTREAM_API_KEYS = {"OPENAI_API_KEY": "sk-test-not-real"}
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def minute_start(time_machine):
    """Move the wall clock back to the start of the current minute, ticking on from there:
    rate-limit counts are per wall-clock minute, and one that straddled two would restart.
    (time-machine moves time.time and datetime; monotonic clocks and sleeps stay real.)"""
    import time

    now = time.time()
    time_machine.move_to(now - now % 60 + 0.5, tick=True)
    return time_machine


@pytest.fixture
def sandbox_state():
    from routing.providers import sandbox_chat

    return sandbox_chat.state


@pytest.fixture
def asgi_server(transactional_db, settings):
    """Our ASGI app under a real uvicorn server on 127.0.0.1 (a thread of this process, so it
    shares the test database and settings), with database threads as in production. Yields
    the base URL."""
    import socket
    import threading
    import time

    import uvicorn

    from huntaze.asgi import application
    from routing.db import db_threads_stop

    settings.DATABASE_THREADS = 2
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(application, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
    db_threads_stop()  # their connections would keep the test database from being dropped


@pytest.fixture
def browser():
    """Debian's headless chromium through Selenium; skips where it is not installed."""
    import shutil

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    chromedriver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (shutil.which(chromium) and shutil.which(chromedriver)):
        pytest.skip("no chromium/chromedriver here (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1400,1800",
    ):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=chromedriver)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def staff_browser(browser, live_server, client):
    """The browser, logged in to admin as a staff superuser on the live server."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests")
    client.force_login(user)
    browser.get(f"{live_server.url}/admin/login/")
    browser.add_cookie({"name": "sessionid", "value": client.cookies["sessionid"].value})
    return browser


@pytest.fixture
def manage_py(transactional_db, tmp_path):
    """Run `manage.py ARGS` in a fresh process, as a user runs it from a shell, on the test
    database; returns the CompletedProcess. Nothing of this process's environment that a
    shell would not have: no TIKTOKEN_CACHE_DIR (the settings must find the tokenizer), and
    state (file cache) in a folder of its own. `env=` adds or overrides variables."""
    import os
    import subprocess
    import sys

    from django.conf import settings as django_settings
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        database_url = f"sqlite:///{db['NAME']}"
    else:
        auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        database_url = (
            f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    base_env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "CI")}
    base_env.update(DATABASE_URL=database_url, SHARED_STATE_DIR=str(tmp_path / "state"))

    def run(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        return subprocess.run(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", *args],
            cwd=django_settings.BASE_DIR,
            env={**base_env, **(env or {})},
            text=True,
            timeout=120,
            **kwargs,
        )

    return run
