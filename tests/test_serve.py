"""`jaxlearn serve` in a real browser: the page that nbs/94_serve.ipynb builds, opened in headless Chromium.

A tiny untrained GPT is served on 127.0.0.1 from a thread; Chromium is driven through the DevTools protocol
(a websocket, `websocket-client`; tests/_chromium.py): fill the prompt box, press Generate, wait for the text, compare it with
`generate`; then a bad top-p, whose message must appear on the page, and a good request again. A second test
starts `serve` in its own process and stops it with SIGINT, as Ctrl-C does.

Chromium comes from Debian: `apt-get install -y chromium` (`make install` does it). Without it these tests
fail; they never skip. Set JAXLEARN_SERVE_SCREENSHOTS=DIR to keep the screenshots the test takes."""
import json, os, signal, socket, subprocess, sys, urllib.request
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _chromium import DevTools  # noqa: E402  (headless Chromium, shared with test_docs.py)


@pytest.fixture(scope="module")
def model_and_tokenizer():
    from flax import nnx
    from jaxlearn.data import load_shakespeare
    from jaxlearn.models.gpt import GPT, GPTConfig
    from jaxlearn.tokenizers import CharTokenizer
    tok = CharTokenizer.from_text(load_shakespeare())
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32), rngs=nnx.Rngs(0))
    model.eval()
    return model, tok


@pytest.fixture(scope="module")
def server(model_and_tokenizer):
    from jaxlearn.serve import make_server
    srv = make_server(*model_and_tokenizer, host="127.0.0.1", port=0).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    browser = DevTools(tmp_path_factory.mktemp("chromium"), window_size="1100,800")
    try:
        browser.call("Page.navigate", url=server.url)
        browser.wait("document.readyState === 'complete' && !!document.getElementById('generate')")
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    keep = os.environ.get("JAXLEARN_SERVE_SCREENSHOTS")
    if keep: Path(keep).mkdir(parents=True, exist_ok=True)
    return Path(keep) if keep else tmp_path_factory.mktemp("screenshots")


def submit(page: DevTools, **fields) -> str:
    "Fill the form as a user types it, press Generate, wait until the page has finished; return its state."
    for name, value in fields.items():
        page.js(f"document.getElementById({json.dumps(name)}).value = {json.dumps(str(value))}")
    page.js("document.getElementById('generate').click()")
    return page.wait("['done', 'error', 'stopped'].includes(document.getElementById('output').dataset.state)"
                     " && document.getElementById('output').dataset.state")


def greedy_text(model, tok, prompt: str, length: int) -> str:
    import jax
    from jaxlearn import sampling
    ids = np.asarray(tok.encode(prompt))[None]
    out = sampling.generate(model, ids, jax.random.key(0), length, [sampling.temperature(0)])
    return tok.decode(np.asarray(out)[0, ids.shape[1]:])


def test_page_streams_text_and_shows_errors(page, server, model_and_tokenizer, shots):
    model, tok = model_and_tokenizer
    want = greedy_text(model, tok, "ROMEO:", 60)
    state = submit(page, prompt="ROMEO:", temperature=0, top_k=0, top_p=1, length=60)
    shot = page.screenshot(shots / "serve_generated.png")
    print("screenshot:", shot)
    assert state == "done", page.js("document.getElementById('error').textContent")
    shown = page.js("document.getElementById('output').textContent")
    assert len(shown) > len("ROMEO:") and shown == "ROMEO:" + want, (shown, want)
    # the page appended the text piece by piece as the lines arrived, not once at the end
    assert page.js("document.getElementById('generated').childNodes.length") > 1
    assert "60 tokens in" in page.js("document.getElementById('status').textContent")
    assert page.js("document.getElementById('error').hidden")

    # bad settings: the server's message, naming the parameter, appears on the page; nothing is generated
    for fields, name, detail in (({"top_p": 1.5}, "top_p", "(0, 1]"), ({"top_p": 1, "temperature": -1}, "temperature", ">= 0"),
                                 ({"temperature": 0, "prompt": ""}, "prompt", "non-empty")):
        assert submit(page, **fields) == "error"
        error = page.js("document.getElementById('error').hidden ? '' : document.getElementById('error').textContent")
        assert error.startswith(name) and detail in error, (fields, error)
        assert page.js("document.getElementById('generated').textContent") == ""
        if name == "top_p": page.screenshot(shots / "serve_error.png")

    # the server kept running: the same good request again gives the same text, and the error is gone
    assert submit(page, prompt="ROMEO:", temperature=0, top_p=1, length=60) == "done"
    assert page.js("document.getElementById('output').textContent") == "ROMEO:" + want
    assert page.js("document.getElementById('error').hidden")

    # everything the page loaded came from the server itself, and no script failed
    urls = [e["params"]["request"]["url"] for e in page.events if e["method"] == "Network.requestWillBeSent"]
    assert urls and all(u.startswith(server.url) for u in urls), urls
    errors = [e["params"] for e in page.events if e["method"] == "Runtime.exceptionThrown"]
    assert not errors, errors
    assert shot.stat().st_size > 5000


SERVE_SCRIPT = """
import sys
from flax import nnx
from jaxlearn.models.gpt import GPT, GPTConfig
from jaxlearn.serve import serve
from jaxlearn.tokenizers import CharTokenizer
tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ")
model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=8), rngs=nnx.Rngs(0))
model.eval()
serve(model, tok, port=int(sys.argv[1]))
print("serve returned")
"""


def test_serve_stops_cleanly_on_ctrl_c(tmp_path):
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT, str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        first = proc.stdout.readline()
        assert f"at http://127.0.0.1:{port}/" in first, (first, proc.stderr.read() if proc.poll() is not None else "")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
            assert r.status == 200 and 'id="generate"' in r.read().decode()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (proc.returncode, err[-3000:])
    assert "stopped" in out and "serve returned" in out, out
    assert "Traceback" not in err, err[-3000:]
