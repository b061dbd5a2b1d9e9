#!/usr/bin/env python
"""Build the docs site offline, without Quarto: nbdev processes the notebooks, smalldocs renders them.

    python tests/build_docs.py                 # the site into _docs/ (what `nbdev-docs` writes with Quarto)
    python tests/build_docs.py --out DIR       # anywhere else (tests/test_docs.py uses a temp folder)

The steps, all on a copy of the project in a temp folder so the working tree is never touched:
1. copy pyproject.toml, nbs/ and jaxlearn/;
2. nbdev: write nbs/nbdev.yml from pyproject.toml, then process the notebooks into _proc/ (what
   `nbdev-proc-nbs` does, minus its attempt to download Quarto): front matter from the title cell,
   `show_doc` cells after every exported definition, directives applied. It runs the cells that
   import or export code (so the `show_doc` output exists), never the training cells;
3. smalldocs renders _proc/ with nbs/_quarto.yml: the chapters, and from its `smalldocs: api:`
   settings one API reference page per `jaxlearn` module (api/*.html);
4. KaTeX, which smalldocs loads from a CDN on the pages with maths, is copied into site_libs/katex from
   node_modules/katex (package.json; `make install` runs `npm ci`) and the pages load it from there, so
   the maths renders offline too. Without it the build warns, and the maths shows as raw TeX offline.

smalldocs reads nbdev's `output-file` (setup.html for 00_setup.ipynb), as Quarto does, so the pages
have the same URLs whichever tool built them, and nbdev's links to the docs site resolve.

A notebook whose import or export cells fail under nbdev is left out of the site and named, with its
cell and error, on stderr; the exit code is then 1 (also with --strict, for any warning that matters:
a broken link, an option smalldocs cannot read). By hand, the same in the repository:
`nbdev-proc-nbs` (it first tries, and fails, to download Quarto; harmless) then `smalldocs render _proc`
(into _proc/_docs, with pages named after the notebooks, 00_setup.html, as plain smalldocs ignores output-file).
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Options that nbs/_quarto.yml and nbdev's nbdev.yml set for Quarto and smalldocs does not read: the
# Markdown copy of each page (commonmark, format-links), and `output-file`, which NbdevSite does read.
QUARTO_ONLY = ("format commonmark is not built", "unknown key format-links", "output-file is not read by smalldocs")


def stage(dst: Path, root: Path = ROOT) -> Path:
    "Copy what nbdev needs from the project `root` into `dst` (emptied first)."
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    shutil.copy2(root / "pyproject.toml", dst / "pyproject.toml")
    skip = shutil.ignore_patterns("__pycache__", "_proc", "_docs", ".ipynb_checkpoints", "sidebar.yml")
    for name in ("nbs", "jaxlearn"):
        shutil.copytree(root / name, dst / name, ignore=skip)
    return dst


_PROC = """
import json
from pathlib import Path
from nbdev.quarto import refresh_quarto_yml
from nbdev.serve import proc_nbs
refresh_quarto_yml()
failed = {{}}
try: proc_nbs(n_workers={n_workers})
except Exception:
    # nbdev stops at the first notebook that fails; find them all, one at a time (those that worked are cached in _proc/).
    for nb in sorted(Path("nbs").rglob("*.ipynb")):
        if any(p.startswith((".", "_")) for p in nb.relative_to("nbs").parts): continue
        try: proc_nbs(n_workers=0, file_glob=nb.name)
        except Exception as e: failed[nb.relative_to("nbs").as_posix()] = str(e)
Path("_proc_failed.json").write_text(json.dumps(failed))
"""


def process(proj: Path, n_workers: int = 2) -> tuple[Path, dict]:
    """Run nbdev's notebook processing in `proj` (a subprocess, so its imports stay out of ours).
    Return `_proc` and {notebook: error} for the notebooks whose import or export cells failed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(proj), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    env.setdefault("JAXLEARN_DATA", str(ROOT.parent / "shared" / "data"))
    res = subprocess.run([sys.executable, "-c", _PROC.format(n_workers=n_workers)], cwd=proj, env=env,
                         capture_output=True, text=True)
    if res.returncode or not (proj / "_proc_failed.json").exists():
        raise RuntimeError(f"nbdev could not process the notebooks:\n{res.stdout[-4000:]}\n{res.stderr[-8000:]}")
    return proj / "_proc", json.loads((proj / "_proc_failed.json").read_text())


def render(proc: Path, out: Path, katex: Path | None = None):
    "Render `proc` with smalldocs into `out`, with KaTeX from `katex` (its dist/ folder); return the site object (pages, warnings)."
    from smalldocs.config import load
    from smalldocs.site import Site

    class NbdevSite(Site):
        "A smalldocs site that names each page as nbdev's `output-file` says, as Quarto does."
        def read(self, src):
            page = super().read(src)
            name = page.front.get("output-file")
            if name: page.out = src.parent / name
            return page

    project = load(proc)
    # `pre-render: smalldocs api build` is there for Quarto; smalldocs builds the API pages itself from `smalldocs: api:`.
    project.project.pop("pre-render", None)
    site = NbdevSite(project, quiet=True)
    site.out = Path(out).resolve()
    # The API pages import jaxlearn: the staged copy, here and in the pre-render script.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(proc.parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    sys.path.insert(0, str(proc.parent))
    cwd = os.getcwd()
    try:
        os.chdir(proc)
        site.build()
    finally:
        os.chdir(cwd)
    bundle_katex(site, katex)
    return site


# KaTeX's files that a page loads (smalldocs's <head>, and the fonts that katex.min.css names), and its licence.
KATEX_FILES = ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js", "fonts")


def katex_dist(root: Path = ROOT) -> Path | None:
    "KaTeX's dist/ folder as npm installed it (package.json) for the project `root` or this repository; None if missing."
    for base in dict.fromkeys((root, ROOT)):
        d = base / "node_modules" / "katex" / "dist"
        if all((d / f).exists() for f in KATEX_FILES): return d
    return None


def bundle_katex(site, dist: Path | None) -> int:
    """Copy KaTeX into the site's site_libs/katex and point the pages that load it from smalldocs's CDN there instead.
    Return the number of pages changed; warn (in `site.warnings`) if a page has maths and KaTeX is not installed."""
    from smalldocs.layout import KATEX  # the CDN folder smalldocs writes into the <head> of each page with maths
    out = Path(site.out)
    pages = [p for p in out.rglob("*.html") if KATEX in p.read_text(encoding="utf-8")]
    if not pages: return 0
    if dist is None:
        site.warnings.append(f"{len(pages)} page(s) have maths, but KaTeX is not in node_modules/katex (run `make install`, "
                             f"or `npm ci`): offline, their maths shows as raw TeX")
        return 0
    dst = out / "site_libs" / "katex"
    for f in KATEX_FILES:
        src = dist / f
        if src.is_dir(): shutil.copytree(src, dst / f, dirs_exist_ok=True)
        else: (dst / f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src, dst / f)
    if (lic := dist.parent / "LICENSE").exists(): shutil.copy2(lic, dst / "LICENSE")
    for p in pages:
        rel = Path(os.path.relpath(dst, p.parent)).as_posix()
        p.write_text(p.read_text(encoding="utf-8").replace(KATEX, rel), encoding="utf-8")
    return len(pages)


def problems(site) -> list[str]:
    "The warnings that matter: all but the Quarto-only options we know about."
    return [w for w in site.warnings if not any(k in w for k in QUARTO_ONLY)]


def build(out: Path, work: Path | None = None, n_workers: int = 2, root: Path = ROOT):
    """Build the site of the project `root` into `out`, without the notebooks that nbdev cannot process.
    Return (site, {notebook: error}, seconds for nbdev, seconds for smalldocs)."""
    tmp = None
    if work is None: work = Path(tmp := tempfile.mkdtemp(prefix="jaxlearn-docs-"))
    try:
        t0 = time.time()
        proc, failed = process(stage(work / "proj", root), n_workers=n_workers)
        t1 = time.time()
        site = render(proc, out, katex_dist(root))
        return site, failed, t1 - t0, time.time() - t1
    finally:
        if tmp: shutil.rmtree(tmp, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "_docs"), help="where to write the site (default: _docs)")
    p.add_argument("--keep", metavar="DIR", help="keep the staged project (with _proc/) in DIR, to inspect")
    p.add_argument("--workers", type=int, default=2, help="processes for nbdev's notebook processing")
    p.add_argument("--report", metavar="FILE", help="write pages, warnings and timings as JSON to FILE")
    p.add_argument("--root", default=str(ROOT), help="the project to build (default: this repository)")
    p.add_argument("--strict", action="store_true", help="exit 1 on any warning beyond the known Quarto-only options")
    a = p.parse_args()
    try: site, failed, t_nb, t_sd = build(Path(a.out), Path(a.keep) if a.keep else None, a.workers, Path(a.root))
    except RuntimeError as e:
        print(f"docs build failed: {e}", file=sys.stderr)
        return 1
    bad = problems(site)
    if a.report:
        pages = {str(pg.src): str(pg.out) for pg in site.pages.values()}
        Path(a.report).write_text(json.dumps({"out": str(site.out), "pages": pages, "failed": failed, "warnings": site.warnings,
                                              "problems": bad, "seconds": {"nbdev": t_nb, "smalldocs": t_sd}}, indent=1))
    for w in bad: print(f"warning: {w}", file=sys.stderr)
    for nb, err in failed.items():
        print(f"error: nbs/{nb} is not in the site: a cell that nbdev runs for the docs (one that imports or exports) failed:\n"
              f"{err}\n", file=sys.stderr)
    print(f"wrote {len(site.pages)} pages to {site.out} (nbdev {t_nb:.0f} s, smalldocs {t_sd:.0f} s)")
    return 1 if failed or (a.strict and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
