import pytest

from routing import tokens


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
