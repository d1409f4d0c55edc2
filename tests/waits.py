"""Waits: for work a real server does after its response (routing.after_response)."""

import time

from routing import after_response
from routing.inflight import inflight_forgetting_settled


def after_response_settled(timeout_s: float = 10) -> None:
    """Return once the in-process server has run every deferred job (its ledger rows are
    written) and forgotten the in-flight records of those rows (Redis); a client has its
    answer a moment before that. Fails past the timeout."""
    deadline = time.monotonic() + timeout_s
    while after_response.pending() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not after_response.pending(), "deferred ledger writes did not finish"
    left_s = max(0.0, deadline - time.monotonic())
    assert inflight_forgetting_settled(left_s), "in-flight records were not forgotten"


def click_and_load(browser, element) -> None:
    """Click something that loads another page (a submit, a link) and return once that page
    has loaded: a click does not wait for it, and the old page may hold what a test looks for."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    # The old page is marked, not held as an element: while it unloads, asking Chromium about
    # one of its elements may fail with an inspector error ("Node with given id does not
    # belong to the document") instead of the stale-element error staleness_of expects.
    browser.execute_script("window.__before_click = true")
    element.click()
    # Scripts may fail for a moment while one page replaces the other: asked again.
    wait = WebDriverWait(browser, 15, ignored_exceptions=(WebDriverException,))
    wait.until(
        lambda driver: driver.execute_script(
            "return window.__before_click !== true && document.readyState === 'complete'"
        )
    )


def element_after_click(browser, by: str, value: str, timeout_s: float = 15):
    """Return the element once the page a click led to has it: a click returns before the
    next page has loaded, and a find right after it may still search the old page."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout_s).until(
        expected_conditions.presence_of_element_located((by, value))
    )
