"""The course website, built and opened in a real browser (headless Chromium driven by Selenium).

The site is built once into a temporary folder (two lectures executed, through the build's cache in
``build/site-cache/``; nbval runs them all in the same test run; ``GENCOURSE_SITE_EXECUTE=all``
executes all ten), served on localhost, and every page is opened with every other host unreachable: it loads
with no console error (so it needs nothing from a CDN), its math is typeset by MathJax (no raw ``$$`` left in what a reader sees), every image is
there and not empty, every link inside the site resolves (file and anchor), and no line of a
solution or of a hidden test appears in the text of any page (the rendered text, not the HTML).
Screenshots of the home page and of one lecture are saved in ``build/site-artifacts/``.

Without Chromium and its driver the tests skip, saying so; under CI (``CI=1``) they fail instead,
and ``.ci/run`` installs both.
"""
import functools
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

from gencourse.grading import site

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "build" / "site-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
# the lectures executed in this test's build (nbval already runs every lecture in the same test run;
# `gencourse site` executes them all): the first, and the one that reads the committed leaderboard.
# GENCOURSE_SITE_EXECUTE=all executes every lecture, so that every lecture's figures are checked too
# (about four more minutes on 2 cores, which the test run's nbval pass already spends on them).
EXECUTED = (tuple(u.lecture for u in site.SYLLABUS) if os.environ.get("GENCOURSE_SITE_EXECUTE") == "all"
            else ("01_generative_models", "09_evaluation"))


def test_the_syllabus_lists_every_lecture_and_assignment():
    assert site.check_syllabus(ROOT) == []
    # and says so when it does not
    extra = site.Unit("99_missing", "a9_missing", ("nn",))
    original = site.SYLLABUS
    try:
        site.SYLLABUS = original + (extra,)
        problems = site.check_syllabus(ROOT)
    finally:
        site.SYLLABUS = original
    assert any("99_missing" in p for p in problems) and any("a9_missing" in p for p in problems)


def test_titles_come_from_the_notebooks():
    assert site.notebook_title(ROOT / "lectures" / "10_diffusion.ipynb") == "Diffusion models"
    assert site.notebook_title(ROOT / "assignments" / "a8_diffusion" / "a8_diffusion.ipynb") == "diffusion models"
    # every lecture opens with "# NN · Title", so the site's navigation lists them alike
    for unit in site.SYLLABUS:
        cells = json.loads((ROOT / "lectures" / f"{unit.lecture}.ipynb").read_text())["cells"]
        first = "".join(cells[0]["source"]).splitlines()[0]
        assert re.fullmatch(rf"# {unit.lecture[:2]} · \S.*", first), first


# --------------------------------------------------------------------------------------------
# The built site, in a browser
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "html"
    index = site.build(ROOT, out, execute=EXECUTED, cache=ROOT / "build" / "site-cache", quiet=True)
    assert index.exists()
    return out


@pytest.fixture(scope="module")
def server(built):
    handler = functools.partial(_QuietHandler, directory=str(built))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        missing = " and ".join(n for n, p in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if not p)
        reason = f"{missing} not installed (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must open the site in a browser, but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000",
                # offline: any host but this machine fails to resolve, so a page that needs a CDN logs an error
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


# what a reader sees: the page's text with MathJax's output taken as typeset (its assistive copies
# and the raw TeX it replaced are not text a reader reads)
VISIBLE_TEXT = """
const body = document.body.cloneNode(true);
body.querySelectorAll('script, style, mjx-assistive-mml').forEach(e => e.remove());
return body.textContent;
"""
# the prose only: code (which may hold TeX for matplotlib's labels) and cell outputs taken out
PROSE_TEXT = """
const body = document.body.cloneNode(true);
body.querySelectorAll('script, style, mjx-assistive-mml, pre, code, .highlight, .cell_output').forEach(e => e.remove());
return body.textContent;
"""
WAIT_FOR_MATH = """
const done = arguments[arguments.length - 1];
if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
  MathJax.startup.promise.then(() => done(true), () => done(false));
} else { done(null); }
"""
IMAGES = """
return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight]);
"""
LINKS = "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);"


@functools.lru_cache(maxsize=None)
def _pages(out: Path) -> tuple:
    # the pages, not the theme's templates that Sphinx copies into _static/
    return tuple(sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html")
                        if not p.relative_to(out).as_posix().startswith("_static/")))


def _open(driver, url: str) -> dict:
    driver.get(url)
    math = driver.execute_async_script(WAIT_FOR_MATH)
    return {"math": math, "text": driver.execute_script(VISIBLE_TEXT), "prose": driver.execute_script(PROSE_TEXT),
            "images": driver.execute_script(IMAGES),
            "links": driver.execute_script(LINKS), "log": driver.get_log("browser"),
            "typeset": driver.execute_script("return document.querySelectorAll('mjx-container').length;")}


@pytest.fixture(scope="module")
def visited(built, server, browser):
    """Every page of the site, opened once: {relative path: what _open saw}."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    seen = {}
    for page in _pages(built):
        if page in ("index.html", "lectures/04_vae.html") and seen:
            # photographed as a reader arriving fresh sees it: the theme stores the sidebar's scroll
            # when a page unloads and restores it on the next one, so forget it after the theme's
            # own beforeunload handler has run
            browser.execute_script("window.addEventListener('beforeunload', () => sessionStorage.clear());")
        seen[page] = _open(browser, urljoin(server, page))
        if page in ("index.html", "lectures/04_vae.html"):
            browser.save_screenshot(str(ARTIFACTS / f"{page.replace('/', '_').replace('.html', '')}.png"))
    return seen


def test_every_page_is_there(built):
    pages = _pages(built)
    for unit in site.SYLLABUS:
        assert f"lectures/{unit.lecture}.html" in pages
        assert f"assignments/{unit.assignment}.html" in pages
    assert {"index.html", "leaderboard.html", "api/diffusion.html"} <= set(pages)


def test_pages_load_without_console_errors(visited):
    errors = {page: [e["message"] for e in v["log"] if e["level"] == "SEVERE"] for page, v in visited.items()}
    assert not {p: e for p, e in errors.items() if e}


def test_math_is_typeset(visited):
    for page, v in visited.items():
        assert v["math"] is not False, f"{page}: MathJax failed"
        for raw in ("$$", "\\begin{", "\\frac", "\\mathbb"):
            assert raw not in v["prose"], f"{page}: raw {raw!r} left in the text"
    for unit in site.SYLLABUS:  # every lecture has math, typeset by the site's own MathJax
        assert visited[f"lectures/{unit.lecture}.html"]["typeset"] > 5, unit.lecture


def test_every_figure_is_present_and_not_empty(visited, built):
    for page, v in visited.items():
        for src, complete, width, height in v["images"]:
            assert complete and width > 0 and height > 0, f"{page}: image {src} is missing or empty"
    for lecture in EXECUTED:  # the executed lectures carry their figures
        assert len(visited[f"lectures/{lecture}.html"]["images"]) >= 2, lecture


def test_every_internal_link_resolves(visited, built, server):
    ids = {}
    for page, v in visited.items():
        for href in v["links"]:
            if not href.startswith(server):
                assert urlparse(href).scheme in ("http", "https", "mailto"), f"{page}: odd link {href}"
                continue
            parsed = urlparse(href)
            target = unquote(parsed.path[len(urlparse(server).path):]) or "index.html"
            if target.endswith("/"):
                target += "index.html"
            path = built / target
            assert path.is_file(), f"{page}: link to {target}, which is not in the site"
            if parsed.fragment and path.suffix == ".html":
                if target not in ids:
                    ids[target] = set(re.findall(r'\bid="([^"]+)"', path.read_text()))
                assert unquote(parsed.fragment) in ids[target], f"{page}: anchor #{parsed.fragment} not in {target}"


def _marked_lines(nb_path: Path, begin: str, end: str) -> set:
    lines, inside = set(), False
    for cell in json.loads(nb_path.read_text())["cells"]:
        for line in "".join(cell["source"]).splitlines():
            if begin in line:
                inside = True
            elif end in line:
                inside = False
            elif inside:
                lines.add(line.strip())
    return lines


def _lecture_text() -> str:
    return "\n".join("".join(c["source"]) for p in sorted((ROOT / "lectures").glob("*.ipynb"))
                     for c in json.loads(p.read_text())["cells"])


def test_no_solution_or_hidden_test_is_shown(visited):
    # what students are given, prompts included ("train it with `fit(model, ...)`")
    released = "\n".join("".join(c["source"]) for p in sorted((ROOT / "assignments").glob("*/*.ipynb"))
                         for c in json.loads(p.read_text())["cells"])
    lectures = _lecture_text()
    hidden, solutions = set(), set()
    for nb in (ROOT / "solutions").glob("*/*.ipynb"):
        hidden |= _marked_lines(nb, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
        solutions |= _marked_lines(nb, "BEGIN SOLUTION", "END SOLUTION")
    # distinctive lines only: long enough not to be a common idiom, nowhere in what students are given,
    # and (for solutions) not code the lectures teach in the open
    hidden = {h for h in hidden if len(h) >= 20 and h not in released}
    solutions = {s for s in solutions if len(s) >= 25 and s not in released and s not in lectures}
    assert len(hidden) > 20 and len(solutions) > 50  # the search has something to find
    for page, v in visited.items():
        text = v["text"]
        leaked = sorted(line for line in hidden | solutions if line in text)
        assert not leaked, f"{page} shows {len(leaked)} line(s) of solutions or hidden tests, e.g. {leaked[:3]}"


def test_the_search_reads_code_as_a_reader_does(visited, built):
    # code lines of a lecture are found in the page's text, although the highlighter split them into
    # tags in the HTML: the search above would find a leaked line the same way
    nb = json.loads((ROOT / "lectures" / "10_diffusion.ipynb").read_text())
    code = [line.strip() for c in nb["cells"] if c["cell_type"] == "code"
            for line in "".join(c["source"]).splitlines() if len(line.strip()) >= 30 and "(" in line]
    html = (built / "lectures" / "10_diffusion.html").read_text()
    text = visited["lectures/10_diffusion.html"]["text"]
    assert all(line in text for line in code[:20])
    assert sum(line in html for line in code[:20]) < 5  # split by the highlighter: raw HTML search would miss them
