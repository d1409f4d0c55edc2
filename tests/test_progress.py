"""Progress of the long commands: drawn on a terminal, never in a pipe, a log or CI."""

import io
import os
import pty
import threading

import pytest

from huntaze.progress import progress, progress_spinner


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_drawn_on_a_terminal_with_the_count(settings):
    settings.PROGRESS_BARS = True
    screen = Terminal()

    items = list(progress(range(3), description="requests", stream=screen))

    assert items == [0, 1, 2]
    assert "requests" in screen.getvalue() and "3/3" in screen.getvalue()


@pytest.mark.parametrize("bars_on, stream", [(True, io.StringIO()), (False, Terminal())])
def test_nothing_is_drawn_in_a_pipe_or_when_switched_off(settings, bars_on, stream):
    settings.PROGRESS_BARS = bars_on

    items = list(progress(iter(range(3)), description="requests", stream=stream))
    with progress_spinner("replaying", stream=stream):
        pass

    assert items == [0, 1, 2]
    assert stream.getvalue() == ""


def test_a_spinner_runs_around_one_long_call(settings):
    settings.PROGRESS_BARS = True
    screen = Terminal()

    with progress_spinner("replaying 30 days", stream=screen):
        result = sum(range(10))

    assert result == 45
    assert "replaying 30 days" in screen.getvalue()


def _on_a_terminal(manage_py, *args: str, env: dict) -> tuple[str, str]:
    """Run manage.py with its standard error on a pseudo-terminal; return (stdout, screen)."""
    controller, terminal = pty.openpty()
    screen = bytearray()

    def read() -> None:  # as a terminal does, while the command runs
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the command's end closed: all read
                return
            if not chunk:
                return
            screen.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        done = manage_py(*args, env=env, stderr=terminal)
    finally:
        os.close(terminal)
        reader.join(timeout=10)
        os.close(controller)
    text = screen.decode(errors="replace")
    assert done.returncode == 0, text
    return done.stdout, text


def test_rollup_rebuild_shows_its_days_on_a_terminal_and_nothing_under_ci(manage_py):
    args = ("rollup_usage", "--days", "3")

    _, screen = _on_a_terminal(manage_py, *args, env={})
    out, quiet = _on_a_terminal(manage_py, *args, env={"CI": "true"})

    assert "days" in screen and "4/4" in screen  # 3 days from now: 2 whole, 2 partial
    assert quiet == ""
    assert out.startswith("rebuilt ")
