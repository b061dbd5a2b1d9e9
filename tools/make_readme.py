"""Write README.md from nbs/index.ipynb (Quarto, which nbdev-readme needs, is not available offline).

Markdown cells are copied as they are; links to chapter notebooks point into nbs/ so they work on GitHub.
`python tools/make_readme.py --check` exits 1 when README.md is out of date."""
import json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def render() -> str:
    nb = json.loads((root / "nbs" / "index.ipynb").read_text())
    parts = []
    for cell in nb["cells"]:
        src = "".join(cell["source"]).strip()
        if not src or src.startswith("#|"): continue
        if cell["cell_type"] == "markdown": parts.append(src)
        else: parts.append(f"```python\n{src}\n```")
    text = "\n\n".join(parts) + "\n"
    # [Setup](00_setup.ipynb) -> [Setup](nbs/00_setup.ipynb): README lives one folder up.
    return re.sub(r"\]\((\d\d[a-z]?_[\w]+\.ipynb)\)", r"](nbs/\1)", text)

if __name__ == "__main__":
    out = root / "README.md"
    if "--check" in sys.argv:
        ok = out.exists() and out.read_text() == render()
        print("README.md is up to date" if ok else "README.md is stale: run python tools/make_readme.py")
        sys.exit(0 if ok else 1)
    out.write_text(render())
    print(f"wrote {out}")
