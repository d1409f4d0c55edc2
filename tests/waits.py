"""Waits: for work a real server does after its response (routing.after_response)."""

import time

from routing import after_response


def after_response_settled(timeout_s: float = 10) -> None:
    """Return once the in-process server has run every deferred job (its ledger rows are
    written); a client has its answer a moment before that. Fails past the timeout."""
    deadline = time.monotonic() + timeout_s
    while after_response.pending() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not after_response.pending(), "deferred ledger writes did not finish"


def click_and_load(browser, element) -> None:
    """Click something that loads another page (a submit, a link) and return once that page
    has loaded: a click does not wait for it, and the old page may hold what a test looks for."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old_page = browser.find_element("tag name", "html")
    element.click()
    wait = WebDriverWait(browser, 15)
    wait.until(expected_conditions.staleness_of(old_page))
    wait.until(lambda driver: driver.execute_script("return document.readyState") == "complete")


def element_after_click(browser, by: str, value: str, timeout_s: float = 15):
    """Return the element once the page a click led to has it: a click returns before the
    next page has loaded, and a find right after it may still search the old page."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout_s).until(
        expected_conditions.presence_of_element_located((by, value))
    )
