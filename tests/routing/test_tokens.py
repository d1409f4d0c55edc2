import pytest

from routing import tokens
from usage.models import UsageRecord


def test_tiktoken_counts_with_the_shared_encoding():
    count, source = tokens.count_text_tokens("hello world")
    assert (count, source) == (2, "tiktoken")


def test_message_count_adds_chat_overhead():
    count, _ = tokens.count_message_tokens([{"content": "hello world"}])
    assert count == 2 + tokens.TOKENS_PER_MESSAGE + 1 + tokens.TOKENS_FOR_REPLY


@pytest.fixture
def no_encoding(monkeypatch):
    """As on an offline host without cached BPE files: the encoding never loads."""
    tokens.count_text_tokens("")  # let the real load finish first, so it cannot race the patch
    monkeypatch.setattr(tokens, "_encoding", None)


def test_missing_encoding_degrades_to_an_estimate_and_says_so(no_encoding):
    count, source = tokens.count_text_tokens("x" * 40)
    assert (count, source) == (10, "estimate")
    assert tokens.encode("x") is None


def test_estimate_reaches_the_ledger_source(no_encoding):
    _, source = tokens.count_message_tokens([{"content": "hi"}])
    assert source == "estimate"


def test_manage_py_run_from_a_shell_counts_with_tiktoken(manage_py, policy):
    # given a shell without TIKTOKEN_CACHE_DIR (the settings look beside the checkout)
    # when the README's demo command runs
    done = manage_py("simulate", "--requests", "5")

    # then its prompts were counted with the tokenizer before each call, not estimated
    assert done.returncode == 0, done.stderr
    assert set(UsageRecord.objects.values_list("estimate_source", flat=True)) == {"tiktoken"}


def test_manage_py_without_tokenizer_files_estimates_and_says_so(manage_py, tmp_path):
    # given an empty tokenizer folder, and downloads that fail at once (a proxy on a closed
    # loopback port: nothing leaves the machine)
    offline = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    env = {"TIKTOKEN_CACHE_DIR": str(tmp_path), **offline, "NO_PROXY": "", "no_proxy": ""}

    # when a process counts tokens
    code = "from routing.tokens import count_text_tokens; print(count_text_tokens('x' * 40))"
    done = manage_py("shell", "--no-imports", "-c", code, env=env)

    # then it degrades to the estimate, marked as one, and logs why
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(10, 'estimate')"
    assert "token counts are estimates" in done.stderr
