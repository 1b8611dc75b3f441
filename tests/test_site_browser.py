"""Browser test: headless Debian Chromium opens the built site (fixture catalog + a made-up
results snapshot), a paper page, a leaderboard page and the search, and asserts on what it shows.

Screenshots go to ``test-artifacts/screenshots/`` (gitignored). Skips, saying why, when selenium,
/usr/bin/chromium or /usr/bin/chromedriver is missing. Selenium Manager is never used: the driver
path is given explicitly and SE_OFFLINE is set.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from test_site import HOSTILE_KEY, build_fixture_site

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"

pytestmark = pytest.mark.browser


def _skip_reason() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install mcbench[test])"
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.is_file():
            return f"{path} not found: install Debian's {pkg} (apt-get install chromium chromium-driver)"
    return None


if _skip_reason():
    pytest.skip(_skip_reason(), allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site_url(tmp_path_factory):
    built = build_fixture_site(tmp_path_factory.mktemp("browser-site"))
    handler = functools.partial(_QuietHandler, directory=str(built))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def driver():
    os.environ["SE_OFFLINE"] = "true"  # belt and braces: Selenium Manager must never download
    profile = tempfile.mkdtemp(prefix="mcbench-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1366,900", "--force-prefers-reduced-motion"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _wait(drv, cond, timeout=10):
    return WebDriverWait(drv, timeout).until(cond)


def _shot(drv, name: str, full: bool = True) -> Path:
    """Save a screenshot; ``full`` grows the window to the page height first (capped)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    if full:
        height = drv.execute_script("return document.documentElement.scrollHeight")
        drv.set_window_size(1366, min(max(int(height) + 120, 900), 3000))
        time.sleep(0.2)
    drv.save_screenshot(str(path))
    drv.set_window_size(1366, 900)
    return path


def _no_alert(drv):
    try:
        text = drv.switch_to.alert.text
    except NoAlertPresentException:
        return
    pytest.fail(f"a JavaScript alert opened: {text!r}")


def test_home(driver, site_url):
    driver.get(site_url + "/")
    _wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "article h1")))
    assert driver.find_element(By.CSS_SELECTOR, "article h1").text == "mcbench"
    tabs = [t.text for t in driver.find_elements(By.CSS_SELECTOR, ".md-tabs__link")]
    assert {"Catalog", "Leaderboards", "Methodology"} <= set(tabs), tabs
    assert "2 papers in the catalog" in driver.find_element(By.CSS_SELECTOR, "article").text
    _shot(driver, "01-home")


def test_paper_page(driver, site_url):
    driver.get(site_url + "/catalog/distillation/hinton2015distilling/")
    _wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "article h1")))
    article = driver.find_element(By.CSS_SELECTOR, "article")
    assert driver.find_element(By.CSS_SELECTOR, "article h1").text.startswith("Distilling the Knowledge in a Neural Network")
    assert "Geoffrey Hinton, Oriol Vinyals, Jeff Dean" in article.text
    assert driver.find_element(By.LINK_TEXT, "arXiv:1503.02531").get_attribute("href") == "https://arxiv.org/abs/1503.02531"
    badges = [b.text for b in driver.find_elements(By.CSS_SELECTOR, ".mc-status")]
    assert badges == ["reproduced", "same direction", "not comparable"], badges
    assert "hinton2015distilling" in article.text and "methods/distillation/hinton2015distilling.py" in article.text
    assert "mcbench run --methods hinton2015distilling" in article.text
    codes = [c.text for c in driver.find_elements(By.CSS_SELECTOR, ".highlight code")]
    assert any(c.startswith("@misc{hinton2015distilling,") for c in codes), codes
    # material adds a copy-to-clipboard button to code blocks (content.code.copy)
    assert driver.find_elements(By.CSS_SELECTOR, "button.md-code__button, button.md-clipboard")
    _shot(driver, "02-paper")


def test_leaderboard_sorts_and_plots(driver, site_url):
    driver.get(site_url + "/leaderboard/fmnist/")
    _wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".mc-leaderboard table th[role=columnheader]")))
    table = driver.find_element(By.CSS_SELECTOR, ".mc-leaderboard table")

    def first_column():
        return [r.find_elements(By.TAG_NAME, "td")[0].text for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

    methods = first_column()
    assert methods[0] == "hinton2015distilling" and "baseline" in methods  # best top-1 first
    assert "<img src=x onerror=alert('pwned-method')>" in methods          # hostile method name shown as text
    header = table.find_element(By.XPATH, ".//th[starts-with(normalize-space(.), 'p50 b1')]")
    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    p50 = [float(r.find_elements(By.TAG_NAME, "td")[8].text.split()[0]) for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert p50 == sorted(p50)
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    assert first_column()[0] == "baseline" or first_column()[0] == "zhu2017prune"
    assert "simulated" in table.text and "real" in table.text
    imgs = driver.find_elements(By.CSS_SELECTOR, ".mc-plots img")
    assert len(imgs) == 2
    for img in imgs:
        driver.execute_script("arguments[0].scrollIntoView()", img)
        _wait(driver, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img))
    driver.execute_script("window.scrollTo(0, 0); arguments[0].parentElement.scrollLeft = 0", table)
    _no_alert(driver)
    _shot(driver, "03-leaderboard")


def test_search(driver, site_url):
    driver.get(site_url + "/")
    _wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "article h1")))
    box = _wait(driver, EC.element_to_be_clickable((By.CSS_SELECTOR, "input.md-search__input")))
    box.click()
    box.send_keys("temperature")
    # read the result texts in one script call: the list re-renders while the query is processed,
    # so element handles found in one call can be stale in the next
    texts_js = "return [...document.querySelectorAll('.md-search-result__item')].map(e => e.textContent);"
    texts = _wait(driver, lambda d: [t for t in d.execute_script(texts_js) if "Distilling the Knowledge" in t] and
                  d.execute_script(texts_js), timeout=15)
    assert any("Distilling the Knowledge" in t for t in texts), texts
    _shot(driver, "04-search", full=False)
    box.send_keys(Keys.ESCAPE)


def test_hostile_page_is_text(driver, site_url):
    driver.get(site_url + f"/catalog/distillation/{HOSTILE_KEY}/")
    h1 = _wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "article h1")))
    _no_alert(driver)
    assert h1.text.startswith('<script>alert("pwned-title")</script> *Bold* | pipe _under_ `tick`')
    article = driver.find_element(By.CSS_SELECTOR, "article").text
    assert "<script>alert(\"pwned-summary\")</script>" in article and "**not bold**" in article
    # no script element carries the payload, and no element got an event-handler attribute
    payload = driver.execute_script("""
        const s = [...document.querySelectorAll('script')].filter(e => e.textContent.includes('pwned'));
        const on = [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on')));
        return [s.length, on.length];""")
    assert payload == [0, 0]
    # a catalog-only paper has no paper setting: its claim gets no verdict, and says why
    assert driver.find_elements(By.CSS_SELECTOR, ".mc-status")[0].text == "not comparable"
    _shot(driver, "05-hostile-paper")


def test_dark_palette(driver, site_url):
    driver.get(site_url + "/catalog/")
    _wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "article h1")))
    before = driver.execute_script("return document.body.getAttribute('data-md-color-scheme')")
    toggle = [t for t in driver.find_elements(By.CSS_SELECTOR, "form[data-md-component=palette] label") if t.is_displayed()]
    assert toggle, "no palette toggle"
    toggle[0].click()
    after = driver.execute_script("return document.body.getAttribute('data-md-color-scheme')")
    assert {before, after} == {"default", "slate"}
    _shot(driver, "06-catalog-dark")
