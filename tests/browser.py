"""A page in a real browser: Debian's chromium driven by Selenium through chromium-driver (no browser download).

:class:`Page` moves the controls of a Gradio page by their ``elem_id`` as a person would (typing, clicking) and reads
its pictures' pixels back from the server.
"""

from __future__ import annotations

import io
import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

#: How long a control's effect may take to show (a CPU drawing under a loaded test machine).
PATIENCE = 90.0


def chromium() -> tuple[str, str] | None:
    """Debian's chromium and its driver, when installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


class Page:
    """One headless chromium tab on ``url``."""

    def __init__(self, url: str, browser: str, driver: str) -> None:
        options = webdriver.ChromeOptions()
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
            options.add_argument(argument)
        options.add_argument("--window-size=1400,1300")
        options.binary_location = browser
        self.driver = webdriver.Chrome(service=Service(driver), options=options)
        self.url = url
        self.driver.get(url)

    def close(self) -> None:
        self.driver.quit()

    def wait(self, what: Callable[[], Any], message: str, patience: float = PATIENCE) -> Any:
        """``what()`` once it is truthy (page errors and stale elements retried), else an AssertionError."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            try:
                found = what()
            except (StaleElementReferenceException, WebDriverException):
                found = None
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(f"{message} (after {patience:.0f} s)")

    def element(self, css: str) -> WebElement:
        return self.wait(lambda: self.driver.find_element(By.CSS_SELECTOR, css), f"no {css} on the page")

    def text(self, elem_id: str) -> str:
        return self.element(f"#{elem_id}").text

    def source(self, elem_id: str) -> str | None:
        """The URL of the picture an Image component shows, or None while it shows none."""
        images = self.driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} img")
        return images[0].get_attribute("src") if images else None

    def picture(self, elem_id: str, other_than: str | None = None) -> tuple[str, np.ndarray]:
        """The picture an Image component shows (once it shows one other than ``other_than``): URL and pixels."""

        def fetched() -> tuple[str, np.ndarray] | None:
            src = self.source(elem_id)
            if not src or src == other_than:
                return None
            try:
                with urllib.request.urlopen(src, timeout=30) as response:  # the page's own server, on this machine
                    return src, np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))
            except OSError:  # not (fully) there yet
                return None

        return self.wait(fetched, f"#{elem_id} shows no new picture")

    def changed(self, elem_id: str, before: tuple[str, np.ndarray], act: Callable[[], Any]) -> tuple[str, np.ndarray]:
        """Do ``act`` and return the new picture of ``elem_id``, asserting its pixels differ from ``before``'s."""
        act()
        after = self.picture(elem_id, other_than=before[0])
        assert after[1].shape != before[1].shape or not np.array_equal(after[1], before[1]), elem_id
        return after

    def type_number(self, elem_id: str, value: float) -> None:
        """Type ``value`` into a Number's or a Slider's box and press Enter."""
        box = self.element(f"#{elem_id} input[type=number]")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(str(value), Keys.ENTER)

    def choose(self, elem_id: str, option: str) -> None:
        """Pick ``option`` of a Dropdown: open it and click the option."""
        self.element(f"#{elem_id} input[role=combobox]").click()
        self.element(f"[role=listbox] [role=option][aria-label={option!r}]").click()

    def click(self, css: str) -> None:
        self.element(css).click()

    def radio(self, elem_id: str, option: str) -> None:
        self.wait(
            lambda: next(
                (
                    o
                    for o in self.driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} label")
                    if o.text.strip() == option
                ),
                None,
            ),
            f"#{elem_id} has no choice {option!r}",
        ).click()

    def tab(self, name: str) -> None:
        self.wait(
            lambda: next(
                (t for t in self.driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if t.text.strip() == name),
                None,
            ),
            f"no tab {name!r}",
        ).click()

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
