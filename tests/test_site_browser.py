"""Browser test: headless Debian Chromium opens the built site (fixture catalog + a made-up
results snapshot) at a desktop (1366x900) and a phone (390x844) viewport: a paper page, the
leaderboard (sorting; the plots' rendered text size), the catalog filter, the search, the downloads
(the CSV opens in pandas, the .bib parses with bibtexparser) and dark mode, and asserts on what it shows.

Screenshots go to ``test-artifacts/screenshots/`` (git-ignored; ``MCBENCH_SHOTS`` overrides). Skips, saying why, when selenium,
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
SHOTS = Path(os.environ.get("MCBENCH_SHOTS") or Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots")
DESKTOP, PHONE = (1366, 900), (390, 844)
MIN_TEXT_PX = 10.0   # the smallest rendered plot text (tick labels, point labels) we accept as legible

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


def _shot(drv, name: str, full: bool = True, size=DESKTOP) -> Path:
    """Save a screenshot; ``full`` grows the window to the page height first (capped)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    if full:
        height = drv.execute_script("return document.documentElement.scrollHeight")
        drv.set_window_size(size[0], min(max(int(height) + 120, size[1]), 3000))
        time.sleep(0.2)
    drv.save_screenshot(str(path))
    drv.set_window_size(*size)
    return path


def _viewport(drv, size) -> None:
    drv.set_window_size(*size)
    time.sleep(0.2)


PLOT_TEXT_JS = """
    const out = [];
    for (const fig of document.querySelectorAll('.mc-plot')) {
      for (const svg of fig.querySelectorAll('svg')) {
        const box = svg.getBoundingClientRect();
        if (!box.width) continue;                                   // the variant for the other viewport
        for (const t of svg.querySelectorAll('text')) {
          const r = t.getBoundingClientRect();
          if (!t.textContent.trim() || !r.height) continue;
          out.push({text: t.textContent, h: r.height, x0: r.left, y0: r.top, x1: r.right, y1: r.bottom,
                    sx0: box.left, sx1: box.right, fill: getComputedStyle(t).fill});
        }
      }
    }
    return out;"""


def _plot_texts(drv):
    return drv.execute_script(PLOT_TEXT_JS)


def _rgb(css: str) -> tuple[int, ...]:
    return tuple(int(v) for v in css[css.index("(") + 1:css.index(")")].split(",")[:3])


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
    bib_link = driver.find_element(By.LINK_TEXT, "hinton2015distilling.bib")
    assert bib_link.get_attribute("href").endswith("/downloads/bib/hinton2015distilling.bib")
    assert "hinton2015distilling" in article.text and "methods/distillation/hinton2015distilling.py" in article.text
    assert "mcbench run --methods hinton2015distilling" in article.text
    codes = [c.text for c in driver.find_elements(By.CSS_SELECTOR, ".highlight code")]
    assert any(c.startswith("@misc{hinton2015distilling,") for c in codes), codes
    # material adds a copy-to-clipboard button to code blocks (content.code.copy)
    assert driver.find_elements(By.CSS_SELECTOR, "button.md-code__button, button.md-clipboard")
    _shot(driver, "02-paper")


def test_leaderboard_sorts_and_plots(driver, site_url):
    _viewport(driver, DESKTOP)
    driver.get(site_url + "/leaderboard/fmnist/")
    _wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".mc-leaderboard table th[role=columnheader]")))
    table = driver.find_element(By.CSS_SELECTOR, ".mc-leaderboard table")
    heads = [h.text for h in table.find_elements(By.CSS_SELECTOR, "thead tr:last-child th")]
    for col in ("Speedup b1", "Speedup b64", "Bits/w", "Bits/act", "Train s", "Storage", "Compute"):
        assert col in heads, heads
    groups = [g.text for g in table.find_elements(By.CSS_SELECTOR, "thead tr.mc-group-row th")]
    assert [g.upper() for g in groups if g] == ["ACCURACY", "SIZE", "COMPUTE", "COST", "REAL?"], groups
    titles = [h.get_attribute("title") for h in table.find_elements(By.CSS_SELECTOR, "thead tr:last-child th")]
    assert all(t and len(t) > 20 for t in titles)                  # every column explained on hover
    assert any(h.startswith("Encoded") for h in heads) and any(h.startswith("Theor.") for h in heads)

    def column(i):
        return [r.find_elements(By.TAG_NAME, "td")[i].text for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

    methods = column(0)
    assert methods[0] == "Hinton et al." and "baseline (reference)" in methods  # best top-1 first, readable names
    link = table.find_element(By.LINK_TEXT, "Hinton et al.")
    assert link.get_attribute("title") == "hinton2015distilling"               # the key on hover
    assert "<img src=x onerror=alert('pwned-method')>" in methods          # hostile method name shown as text
    p50 = heads.index("p50 b1 ms")
    header = table.find_elements(By.CSS_SELECTOR, "thead tr:last-child th")[p50]
    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    values = [float(v.split()[0]) for v in column(p50)]
    assert values == sorted(values)
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    assert "simulated" in table.text and "real" in table.text
    act = heads.index("Bits/act")
    assert column(act)[methods.index("baseline (reference)")] == "32"
    figures = driver.find_elements(By.CSS_SELECTOR, ".mc-plot")
    assert len(figures) == 4
    texts = _plot_texts(driver)
    assert texts and min(t["h"] for t in texts) >= MIN_TEXT_PX, sorted(t["h"] for t in texts)[:5]
    assert not [t["text"] for t in texts if t["x0"] < t["sx0"] - 1 or t["x1"] > t["sx1"] + 1]
    labels = [t for t in texts if t["text"] in ("Hinton et al.", "zhu2017prune", "baseline", "student")]
    assert labels, "no point labels drawn"
    assert {"sparsity50", "sparsity95"} <= {t["text"] for t in texts}   # the levels of zhu2017prune's curve are named
    _no_alert(driver)
    driver.execute_script("window.scrollTo(0, 0)")
    _shot(driver, "03-leaderboard-desktop")
    _plot_shot(driver, "compression", "12-compression-plot-desktop")


def _plot_shot(drv, kind: str, name: str, size=DESKTOP) -> Path:
    """A viewport screenshot with the ``kind`` plot of the first budget scrolled to the top."""
    fig = drv.find_element(By.CSS_SELECTOR, f"figure[id$='-{kind}']")
    drv.execute_script("arguments[0].scrollIntoView({block: 'start'}); window.scrollBy(0, -60);", fig)
    time.sleep(0.3)
    return _shot(drv, name, full=False, size=size)


def test_leaderboard_on_a_phone(driver, site_url):
    _viewport(driver, PHONE)
    try:
        driver.get(site_url + "/leaderboard/fmnist/")
        _wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".mc-plot")))
        texts = _plot_texts(driver)
        assert texts, "no plot is shown on a phone"
        assert min(t["h"] for t in texts) >= MIN_TEXT_PX, sorted(t["h"] for t in texts)[:5]
        clipped = [t["text"] for t in texts if t["x0"] < t["sx0"] - 1 or t["x1"] > t["sx1"] + 1]
        assert not clipped, clipped                                   # no title, axis label or point label cut off
        widths = driver.execute_script(
            "return [...document.querySelectorAll('.mc-plot svg')].map(s => s.getBoundingClientRect().width)"
            ".filter(w => w > 0)")
        assert widths and max(widths) <= PHONE[0], widths              # the figure fits the screen
        _shot(driver, "07-leaderboard-phone", size=PHONE)
        _plot_shot(driver, "compression", "13-compression-plot-phone", size=PHONE)
        _plot_shot(driver, "latency", "14-latency-plot-phone", size=PHONE)
        driver.get(site_url + "/catalog/distillation/hinton2015distilling/")
        h1 = _wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "article h1")))
        assert h1.text.startswith("Distilling the Knowledge") and h1.rect["width"] <= PHONE[0]
        _shot(driver, "08-paper-phone", size=PHONE)
    finally:
        _viewport(driver, DESKTOP)


def test_catalog_filter(driver, site_url):
    driver.get(site_url + "/catalog/")
    _wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".mc-filter select")))
    rows_js = ("return [...document.querySelectorAll('.mc-papers tbody tr')].filter(r => !r.hidden)"
               ".map(r => [...r.cells].map(c => c.textContent.trim()))")
    heads = [h.text for h in driver.find_elements(By.CSS_SELECTOR, ".mc-papers thead th")]
    assert heads[:7] == ["Paper", "Authors", "Venue", "Year", "Family", "Status", "Key"], heads
    everything = driver.execute_script(rows_js)
    assert len(everything) == 2
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.CSS_SELECTOR, "select[data-mc-filter=status]")).select_by_value("implemented")
    shown = driver.execute_script(rows_js)
    assert shown and len(shown) < len(everything) and all(r[5] == "implemented" for r in shown), shown
    assert shown[0][0].startswith("★")
    assert driver.find_element(By.CSS_SELECTOR, ".mc-filter-count").text == f"{len(shown)} of 2 papers"
    Select(driver.find_element(By.CSS_SELECTOR, "select[data-mc-filter=status]")).select_by_value("")
    box = driver.find_element(By.CSS_SELECTOR, "input[data-mc-filter=text]")
    box.send_keys("hinton2015")
    assert [r[6] for r in driver.execute_script(rows_js)] == ["hinton2015distilling"]
    _shot(driver, "09-catalog-filter")
    box.clear()
    box.send_keys(Keys.BACKSPACE)


def test_downloads(driver, site_url):
    import io
    import urllib.request

    import bibtexparser
    import pandas as pd

    driver.get(site_url + "/downloads/")
    _wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "article h1")))
    csv_url = driver.find_element(By.LINK_TEXT, "runs.csv").get_attribute("href")
    bib_url = driver.find_element(By.LINK_TEXT, "mcbench.bib").get_attribute("href")
    runs = pd.read_csv(io.BytesIO(urllib.request.urlopen(csv_url, timeout=10).read()))
    assert {"method", "top1_acc_pct", "latency_ms_p50_cpu_b1"} <= set(runs.columns) and len(runs) == 33
    lib = bibtexparser.parse_string(urllib.request.urlopen(bib_url, timeout=10).read().decode("utf-8"))
    assert not lib.failed_blocks and sorted(e.key for e in lib.entries) == ["evil2020script", "hinton2015distilling"]
    plot_csv = site_url + "/leaderboard/img/fmnist-default-fashion-mnist-latency.csv"
    data = pd.read_csv(io.BytesIO(urllib.request.urlopen(plot_csv, timeout=10).read()))
    assert {"method", "x", "x_std", "top1_acc_pct"} <= set(data.columns)
    _shot(driver, "10-downloads")


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
    # the plots follow the scheme: light text on slate, dark text on the default scheme
    driver.get(site_url + "/leaderboard/fmnist/")
    _wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ".mc-plot")))
    scheme = driver.execute_script("return document.body.getAttribute('data-md-color-scheme')")
    fills = {_rgb(t["fill"]) for t in _plot_texts(driver)}
    assert fills, "no plot text"
    bright = [sum(f) / 3 for f in fills]
    assert (min(bright) > 150) if scheme == "slate" else (max(bright) < 110), (scheme, fills)
    bg = driver.execute_script("return getComputedStyle(document.querySelector('.mc-plot svg')).backgroundColor")
    assert bg in ("rgba(0, 0, 0, 0)", "transparent"), bg
    _shot(driver, "11-leaderboard-dark")
    _plot_shot(driver, "compression", "15-compression-plot-dark")
    _viewport(driver, PHONE)
    try:
        _plot_shot(driver, "latency", "16-latency-plot-phone-dark", size=PHONE)
        texts = _plot_texts(driver)
        assert texts and min(t["h"] for t in texts) >= MIN_TEXT_PX
    finally:
        _viewport(driver, DESKTOP)
