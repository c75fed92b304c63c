"""A person in a browser (issue 8 §2): headless Chromium, driven by selenium through
chromedriver, opens the landing page of a node started here, types a demo identifier into the
resolve box, submits, and finds the record page; the screenshot is kept in the test's
temporary directory.

Chromium and chromedriver are the Debian packages ``chromium`` and ``chromium-driver``
(``.ci/run`` installs them when missing); the test skips, saying so, only where they are
absent.  Selenium Manager is never asked to download a browser: the binaries are given.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.wire

IDENT = "88.118.8/demo-1"
URL = "https://example.com/sn/demo-1"


def _binary(*names: str) -> str | None:
    return next((p for n in names if (p := shutil.which(n))), None)


CHROMIUM = _binary("chromium", "chromium-browser")
CHROMEDRIVER = _binary("chromedriver")


@pytest.fixture
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("headless Chromium is not installed (Debian packages chromium and "
                    "chromium-driver; .ci/run installs them)")  # fmt: skip
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-extensions", "--no-first-run", "--window-size=1024,768"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(15)
    try:
        yield driver
    finally:
        driver.quit()


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the decompressed scanlines of a PNG (stdlib only)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def test_resolve_box_shows_the_record(browser, start_node, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    node = start_node(workers=1)
    browser.get(node.base_url + "/")
    assert "Resolve an identifier" in browser.title
    box = browser.find_element(By.ID, "identifier")
    box.send_keys(IDENT)
    browser.find_element(By.ID, "resolve-button").click()
    WebDriverWait(browser, 10).until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), IDENT))

    assert browser.current_url == f"{node.base_url}/{IDENT}?noredirect"
    assert browser.find_element(By.TAG_NAME, "h1").text == IDENT
    assert browser.title.startswith(IDENT)
    rows = browser.find_elements(By.CSS_SELECTOR, "tbody tr")
    cells = [[c.text for c in r.find_elements(By.CSS_SELECTOR, "th, td")] for r in rows]
    assert cells[0][:3] == ["1", "URL", URL], cells
    assert ["2", "EMAIL", "quality@example.com"] == cells[1][:3], cells
    link = rows[0].find_element(By.TAG_NAME, "a")
    assert link.get_attribute("href") == URL
    # the inline stylesheet applied (allowed by the page's CSP hash): the table has borders
    assert browser.find_element(By.CSS_SELECTOR, "td").value_of_css_property(
        "border-top-style") == "solid"  # fmt: skip

    shot = tmp_path / "record-page.png"
    assert browser.save_screenshot(str(shot))
    width, height, pixels = png_pixels(shot)
    assert (width, height) >= (600, 400) and shot.stat().st_size > 5_000
    assert len(set(pixels)) > 32, "the screenshot is blank"
