"""The docs site: built offline from the notebooks (tests/build_docs.py: nbdev, then smalldocs) into a
temp folder, served on 127.0.0.1, and opened page by page in one headless Chromium driven through the
DevTools protocol (tests/_chromium.py).

Checks: the build succeeds; smalldocs reports nothing but the Quarto-only options we know about;
every page renders in Chromium with a title, one <h1>, real text, and (chapters) code; maths is
typeset by the KaTeX the site bundles (no raw TeX left); the home page links every chapter; each exported module has an API page naming its public symbols; no
internal link, anchor or asset is broken; no script error on any page.

Chromium comes from Debian: `apt-get install -y chromium` (`make install` does it). Without it
these tests fail; they never skip.
"""
import functools, html.parser, json, os, re, subprocess, sys, threading, time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_docs  # noqa: E402
from _chromium import PageDumper  # noqa: E402  (headless Chromium, shared with test_serve.py)

SITE_URL = "https://jaxlearn.github.io/jaxlearn/"  # nbdev's doc_host + doc_baseurl: links there are links into this site


def chapters(proj: Path = ROOT) -> list[Path]:
    "The numbered notebooks of the project `proj` (the repository, or the copy that was built): the course's chapters."
    return sorted(p for p in (proj / "nbs").glob("[0-9]*.ipynb"))


def out_name(nb: Path) -> str:
    "The page nbdev names a notebook's docs (00_setup.ipynb -> setup.html), as Quarto and build_docs.py write it."
    from nbdev.config import nbpath2html
    return nbpath2html(nb).name


def exported_modules(proj: Path) -> dict[str, list[str]]:
    """The modules the notebooks export (nbdev's index, jaxlearn/_modidx.py) and the public functions and classes each
    defines: the names in its `__all__` that it defines itself. Read from the source, so the copy that was built is the
    one checked, whatever the working tree holds now."""
    import ast, importlib.util
    spec = importlib.util.spec_from_file_location("_jl_modidx", proj / "jaxlearn" / "_modidx.py")
    idx = importlib.util.module_from_spec(spec); spec.loader.exec_module(idx)
    out = {}
    for mod in sorted(idx.d["syms"]):
        path = proj / (mod.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text())
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        names = next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                      and any(getattr(t, "id", None) == "__all__" for t in n.targets)), sorted(defined))
        out[mod] = [n for n in names if n in defined and not n.startswith("_")]
    return out


# ---------------------------------------------------------------- HTML parsing


class Page(html.parser.HTMLParser):
    """What the checks need from one HTML document: title, ids, links, headings, text in <main>, code blocks, scripts;
    and maths: smalldocs's maths spans, those of them that KaTeX typeset, KaTeX's errors, and the prose a reader sees
    (the text in <main> outside code and outside the TeX source that KaTeX keeps for screen readers)."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.title, self.ids, self.links, self.main_links, self.h1 = "", set(), [], [], []
        self.main_text, self.paragraphs, self.code_blocks = [], 0, 0
        self.maths, self._typeset, self.katex_errors, self.prose = 0, set(), [], []
        self._stack, self._classes, self._math, self._in_title, self._h1 = [], [], [], False, None
        self.feed(text); self.close()

    def _in(self, tag): return tag in self._stack
    def _in_class(self, name): return any(name in c for c in self._classes)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"): self.ids.add(a["id"])
        if tag == "a" and a.get("name"): self.ids.add(a["name"])
        for k in ("href", "src"):
            if a.get(k) and tag in ("a", "link", "script", "img", "iframe", "source"):
                self.links.append((tag, a[k]))
                if self._in("main"): self.main_links.append((tag, a[k]))
        if tag == "title": self._in_title = True
        if tag == "h1": self._h1 = []
        if self._in("main"):
            if tag == "p": self.paragraphs += 1
            if tag == "pre": self.code_blocks += 1
        classes = set((a.get("class") or "").split())
        math = tag == "span" and "math" in classes and bool(classes & {"inline", "display"})
        if math: self.maths += 1
        # KaTeX's output (span.katex) inside a maths span: that span is typeset
        if "katex" in classes and (open_maths := [m for m in self._math if m is not None]): self._typeset.add(open_maths[-1])
        if "katex-error" in classes: self.katex_errors.append(a.get("title") or "")
        if tag not in self.VOID:
            self._stack.append(tag); self._classes.append(classes); self._math.append(self.maths if math else None)

    def handle_endtag(self, tag):
        if tag == "title": self._in_title = False
        if tag == "h1" and self._h1 is not None: self.h1.append("".join(self._h1).strip()); self._h1 = None
        if tag in self._stack:
            while self._stack and (self._classes.pop(), self._math.pop(), self._stack.pop())[2] != tag: pass

    def handle_data(self, data):
        if self._in_title: self.title += data
        if self._h1 is not None: self._h1.append(data)
        if self._in("main") and not self._in("script") and not self._in("style"):
            self.main_text.append(data)
            if not any(self._in(t) for t in ("pre", "code")) and not self._in_class("katex-mathml"): self.prose.append(data)

    @property
    def text(self) -> str: return re.sub(r"\s+", " ", " ".join(self.main_text)).strip()

    @property
    def typeset(self) -> int: return len(self._typeset)

    @property
    def prose_text(self) -> str: return re.sub(r"\s+", " ", "".join(self.prose)).strip()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def built(tmp_path_factory, request):
    "Build the site once: (site folder, staged project with _proc/, build report)."
    work = tmp_path_factory.mktemp("docs")
    out, stage, report = work / "site", work / "stage", work / "report.json"
    if keep := request.config.getoption("--docs-out", None):
        out = Path(keep).resolve()
        if out.exists() and any(out.iterdir()) and not (out / "site_libs").is_dir():
            pytest.fail(f"--docs-out {out} is not empty and is not a built site", pytrace=False)
    cmd = [sys.executable, str(ROOT / "tests" / "build_docs.py"), "--out", str(out), "--keep", str(stage), "--report", str(report)]
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if not report.exists():  # (a notebook nbdev cannot process is reported by test_every_notebook_builds)
        pytest.fail(f"docs build failed ({' '.join(cmd)}):\n{res.stdout[-3000:]}\n{res.stderr[-12000:]}", pytrace=False)
    rep = json.loads(report.read_text())
    print(f"docs build: {len(rep['pages'])} pages in {time.time() - t0:.0f} s "
          f"(nbdev {rep['seconds']['nbdev']:.0f} s, smalldocs {rep['seconds']['smalldocs']:.0f} s)")
    return out, stage / "proj" / "_proc", rep  # (the built copy of the project is the parent of _proc)


class _Handler(SimpleHTTPRequestHandler):
    log: list = []
    def log_message(self, *args): pass
    def log_request(self, code="-", size="-"):
        type(self).log.append((self.path, int(code) if str(code).isdigit() else code))


@pytest.fixture(scope="module")
def server(built):
    "Serve the site on 127.0.0.1 (a free port); yield (base URL, request log)."
    out = built[0]
    handler = type("Handler", (_Handler,), {"log": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(out)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True); t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", handler.log
    httpd.shutdown(); httpd.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    "One headless Chromium for every page (DevTools protocol): starting one per page took most of the time."
    b = PageDumper(tmp_path_factory.mktemp("chromium"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def smalldocs_check(built, tmp_path_factory):
    """Start `smalldocs check` on the processed notebooks in the background, as soon as the site is built:
    test_smalldocs_check reads its result. It builds the site a second time (plain smalldocs, in its own scratch
    folder; its pre-render script writes _proc/api), which runs while Chromium opens the pages."""
    _, proc, _ = built
    logs = tmp_path_factory.mktemp("smalldocs-check")
    cli = "import sys; from smalldocs.cli import main; sys.exit(main())"  # this Python's smalldocs, whatever PATH says
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:  # files, not pipes: nothing can block
        p = subprocess.Popen([sys.executable, "-c", cli, "check", str(proc)], stdout=out, stderr=err, text=True,
                             env={**os.environ, "PYTHONPATH": str(proc.parent)})
    yield p, logs
    if p.poll() is None: p.kill(); p.wait()


@pytest.fixture(scope="module")
def rendered(built, server, browser, smalldocs_check):
    """Open every page of the site in Chromium: {page path: (parsed DOM, console messages)}. Each page gets what
    `chromium --dump-dom --virtual-time-budget=3000` gave it (tests/_chromium.py): the DOM once it has loaded and its
    scripts have had 3 s of virtual time, and the console messages from our server. (`smalldocs_check`: so that the
    check runs meanwhile.)"""
    out = built[0]
    base, _ = server
    pages = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html"))
    rendered = {}
    for page in pages:
        dom, console = browser.dump(base + page)
        rendered[page] = Page(dom), console
    return rendered


# ---------------------------------------------------------------- the notebooks, before any build


def test_title_cells_keep_their_prose():
    """nbdev turns a notebook's first markdown cell that has a `# Title` line into the page's title and description
    (its first `# ` line and first `> ` line) and drops everything else in that cell from the docs page."""
    from fastcore.nbio import md_frontmatter
    lost = {}
    for nb in [NBS / "index.ipynb", *chapters()]:
        if not nb.exists(): continue
        cells = json.loads(nb.read_text())["cells"]
        md = next((c for c in cells if c["cell_type"] == "markdown"), None)
        if md is None: continue
        src = "".join(md["source"])
        fm = md_frontmatter(src)
        if not fm: continue
        lines = [l for l in src.splitlines() if l.strip()]
        kept = [next((l for l in lines if re.match(r"^#\s+\S", l)), None), next((l for l in lines if re.match(r"^>\s+\S", l)), None)]
        extra = [l for l in lines if l not in kept and not re.match(r"^-\s+\S.*:.*\S\s*$", l)]
        if fm["title"].startswith("#"): lost[nb.name] = f"title {fm['title']!r} (a markdown cell written with '# ' comment prefixes?)"
        elif extra: lost[nb.name] = f"{len(extra)} line(s) dropped, from {extra[0][:70]!r}"
    assert not lost, ("these notebooks' title cells lose text on the docs page (nbdev keeps only the `# title` and `> description` "
                      "lines of the first markdown cell: put the rest in the next markdown cell):\n"
                      + "\n".join(f"nbs/{k}: {v}" for k, v in lost.items()))


# ---------------------------------------------------------------- the build


def _short(err: str, keep: int = 12) -> str:
    "nbdev's error: its first line (notebook and cell), the cell's last lines, and the exception."
    lines = err.strip().splitlines()
    return "\n".join(lines if len(lines) <= keep + 1 else [lines[0], "    ...", *lines[-keep:]])


def test_every_notebook_builds(built):
    """nbdev runs each notebook's import and export cells (alone, without the other cells) to document it: none may fail.
    (The same happens under Quarto's `nbdev-docs`.)"""
    failed = built[2]["failed"]
    assert not failed, ("notebooks that the docs build cannot process: nbdev-proc-nbs runs only the cells that import, "
                        "export or show_doc, so keep imports in the top import cell and out of cells that need earlier ones:\n\n"
                        + "\n\n".join(f"nbs/{nb}: {_short(err)}" for nb, err in failed.items()))


def test_build_has_every_page(built):
    out, proc, rep = built
    want = {"index.html", *(out_name(nb) for nb in chapters(proc.parent))}
    have = {p.relative_to(out).as_posix() for p in out.glob("*.html")}
    assert want <= have, f"pages missing from the site: {sorted(want - have)}"
    assert not rep["problems"], "the build warned:\n" + "\n".join(rep["problems"])


def test_api_pages(built):
    "Each module the notebooks export has an API page with an entry (an anchor) for each public function and class."
    out, proc, _ = built
    mods = exported_modules(proc.parent)
    assert mods, "jaxlearn/_modidx.py lists no exported module: run nbdev-export"
    missing, no_entry = [], {}
    for m, names in mods.items():
        short = m.rpartition(".")[2]
        page = next((p for p in (out / "api" / f"{short}.html", out / "api" / f"{m}.html") if p.exists()), None)
        if page is None: missing.append(m); continue
        ids = Page(page.read_text()).ids
        if gone := [n for n in names if n not in ids]: no_entry[m] = gone
    assert not missing, f"no API page for {missing} in {out / 'api'}"
    assert not no_entry, f"API pages lack entries for {no_entry}"


def test_search_index_covers_pages(built):
    out, proc, _ = built
    hrefs = {e["href"].partition("#")[0] for e in json.loads((out / "search.json").read_text())}
    want = {"index.html", *(out_name(nb) for nb in chapters(proc.parent))}
    assert want <= hrefs, f"the search index lacks {sorted(want - hrefs)}"


def test_internal_links(built):
    "Every local href/src in every page (and every link to this site's own URL) points at a file that exists, and at an id that exists."
    out = built[0]
    pages = {p.relative_to(out).as_posix(): Page(p.read_text(encoding="utf-8")) for p in out.rglob("*.html")}
    broken = []
    for name, page in pages.items():
        for tag, href in page.links:
            if href.startswith(SITE_URL): href = "/" + href[len(SITE_URL):]
            u = urlsplit(href)
            if u.scheme or u.netloc or href.startswith(("mailto:", "javascript:", "data:")): continue
            path = unquote(u.path)
            target = (name if not path else (path.lstrip("/") if path.startswith("/") else
                      os.path.normpath(os.path.join(os.path.dirname(name), path)).replace(os.sep, "/")))
            f = out / target
            if f.is_dir(): f, target = f / "index.html", (target.rstrip("/") + "/index.html").lstrip("/")
            if not f.is_file():
                broken.append(f"{name}: <{tag}> {href} -> {target} does not exist"); continue
            if u.fragment and target.endswith(".html"):
                ids = pages[target].ids if target in pages else Page(f.read_text()).ids
                if unquote(u.fragment) not in ids:
                    hint = " (nbdev links a name in backticks to its show_doc; a method needs its own show_doc cell)" \
                        if "." in u.fragment and not u.fragment.startswith("cell-") else ""
                    broken.append(f"{name}: {href} -> no id {u.fragment!r} in {target}{hint}")
    assert not broken, f"{len(broken)} broken internal link(s):\n" + "\n".join(sorted(set(broken))[:80])


# ---------------------------------------------------------------- in the browser


def test_pages_render(built, rendered):
    "Every page, as Chromium shows it: a title, one <h1>, text; chapters also paragraphs and code."
    out, proc, _ = built
    chapter_pages = {out_name(nb): nb.name for nb in chapters(proc.parent)}
    bad = []
    for name, (page, _) in rendered.items():
        problems = []
        head = page.title.split(" – ")[0].strip()
        if not head or head.lower() in ("untitled", "index") or re.match(r"^\d+_", head) or head.endswith((".ipynb", ".qmd")):
            problems.append(f"title {page.title!r}")
        if len(page.h1) != 1:
            problems.append(f"{len(page.h1)} <h1> headings (want 1, the title): {page.h1[:4]}"
                            + (" — markdown lines that start with '# ' become headings" if len(page.h1) > 1 else ""))
        min_text = 400 if name in chapter_pages or name == "index.html" else 40
        if len(page.text) < min_text: problems.append(f"only {len(page.text)} characters of text in <main>")
        if name in chapter_pages:
            if page.paragraphs < 3: problems.append(f"{page.paragraphs} paragraphs")
            if page.code_blocks < 1: problems.append("no code blocks")
        if problems: bad.append(f"{name} ({chapter_pages.get(name, 'page')}): " + "; ".join(problems))
    assert not bad, "pages that do not render as they should:\n" + "\n".join(bad)


# What is left of TeX in the text when nothing typeset it: smalldocs's delimiters, and display maths written with $$.
RAW_TEX = ("\\(", "\\)", "\\[", "\\]", "$$")


def test_maths_renders(built, rendered):
    """Every page with maths shows it typeset, offline: it loads KaTeX from the site itself (site_libs/katex, which
    build_docs.py copies from npm's katex), KaTeX typeset each maths span with no error, and the text a reader sees
    has no raw TeX delimiter left in it."""
    out = built[0]
    static = {name: Page((out / name).read_text(encoding="utf-8")) for name in rendered}
    with_maths = {name: pg for name, pg in static.items() if pg.maths}
    assert with_maths, "no page of the site has maths (the chapters write formulas in LaTeX): this check saw nothing"
    bad = []
    for name, before in with_maths.items():
        page, _ = rendered[name]
        problems = []
        scripts = [src for tag, src in before.links if tag == "script" and "katex" in src]
        if not any(urlsplit(src).path.endswith("site_libs/katex/katex.min.js") and not urlsplit(src).netloc for src in scripts):
            problems.append(f"KaTeX is not loaded from the site (scripts: {scripts}); `make install` (npm ci) installs it")
        if page.typeset < before.maths: problems.append(f"{before.maths - page.typeset} of {before.maths} maths spans not typeset")
        if page.katex_errors: problems.append(f"KaTeX errors: {page.katex_errors[:3]}")
        text = page.prose_text
        if raw := [d for d in RAW_TEX if d in text]:
            i = text.index(raw[0])
            problems.append(f"raw TeX {raw} in the text, e.g. {text[max(0, i - 40):i + 60]!r}")
        if problems: bad.append(f"{name}: " + "; ".join(problems))
    assert not bad, "pages whose maths does not render:\n" + "\n".join(bad)


def test_home_lists_chapters(built, rendered):
    "The home page's own text (not only the sidebar) links every chapter."
    page, _ = rendered["index.html"]
    links = {urlsplit(h).path.rpartition("/")[2] for t, h in page.main_links if t == "a"}
    missing = [nb.name for nb in chapters(built[1].parent) if out_name(nb) not in links]
    assert not missing, f"the home page (nbs/index.ipynb) does not link these chapters: {missing}"
    assert "jaxlearn" in page.title


def script_errors(console: list[str]) -> list[str]:
    "The console messages that are script errors: an uncaught exception (`Uncaught ...`) or an error's text."
    return [m for m in console if re.search(r"Uncaught|Error", m)]


def test_no_script_errors_or_failed_requests(rendered, server):
    "No uncaught script error on any page, and every request the pages made to the server succeeded."
    _, log = server
    errors = [f"{name}: {m}" for name, (_, console) in rendered.items() for m in script_errors(console)]
    failed = sorted({f"{path} -> {code}" for path, code in log if code not in (200, 304) and not path.startswith("/favicon.ico")})
    assert not errors, "script errors:\n" + "\n".join(errors)
    assert not failed, "requests that failed:\n" + "\n".join(failed)


# Pages that fail as a site's scripts can: test_console_sees_script_errors serves them to the same browser.
BROKEN_PAGES = {
    "clean.html": "<html><head><title>ok</title><script>console.log('hello')</script></head><body>ok</body></html>",
    "throws.html": "<html><body><script>null.f()</script></body></html>",
    "script.html": '<html><body><script src="bad.js"></script></body></html>',
    "bad.js": "function load() { throw new Error('bad.js failed'); }\nload();",
    # a timer that fires late in the 3 s of virtual time the page gets (virtual, so it costs no wall time)
    "late.html": "<html><body><script>setTimeout(() => { throw new RangeError('late'); }, 2500)</script></body></html>",
    "rejects.html": "<html><body><script>Promise.reject(new TypeError('rejected'))</script></body></html>",
    "logs.html": "<html><body><script>console.error(new Error('logged'))</script></body></html>",
}


def test_console_sees_script_errors(browser, tmp_path):
    "The console capture that test_no_script_errors_or_failed_requests relies on catches each kind of script error."
    for name, text in BROKEN_PAGES.items(): (tmp_path / name).write_text(text)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(tmp_path)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/"
    try: seen = {name: browser.dump(base + name)[1] for name in BROKEN_PAGES if name.endswith(".html")}
    finally: httpd.shutdown(); httpd.server_close()
    assert seen["clean.html"] and not script_errors(seen["clean.html"]), seen["clean.html"]  # seen, and not an error
    want = {"throws.html": "TypeError: Cannot read properties of null", "script.html": "Error: bad.js failed",
            "late.html": "RangeError: late", "rejects.html": "TypeError: rejected", "logs.html": "Error: logged"}
    missed = {name: seen[name] for name, text in want.items()
              if not any(text in m and base in m for m in script_errors(seen[name]))}
    assert not missed, f"script errors the console capture missed: {missed}"


def test_smalldocs_check(smalldocs_check):
    """`smalldocs check` on the processed notebooks: nothing but the Quarto-only options build_docs.py knows about
    (nbdev's `output-file`, which build_docs.py reads, and the Markdown copy that only Quarto writes).
    (Last in this file: the check, started when the site was built, ran while Chromium opened the pages.)"""
    p, logs = smalldocs_check
    try: p.wait(timeout=300)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()
        pytest.fail("smalldocs check ran past 300 s:\n" + (logs / "stderr").read_text()[-3000:], pytrace=False)
    stdout, stderr = (logs / "stdout").read_text(), (logs / "stderr").read_text()
    # (the `wrote N page(s)` line is the pre-render script, `smalldocs api build`, writing the API pages)
    lines = [l for l in stdout.splitlines() if l.strip() and not re.match(r"^wrote \d+ page", l)]
    unexpected = [l for l in lines if not any(k in l for k in build_docs.QUARTO_ONLY)]
    assert p.returncode in (0, 1) and "thing(s) to look at" in stderr, stdout + stderr
    assert not unexpected, "smalldocs check found:\n" + "\n".join(unexpected)
