"""Headless Chromium for the tests (tests/test_docs.py, tests/test_serve.py), driven through the DevTools protocol
over a websocket (`websocket-client`, a dev dependency). One browser process serves many pages: starting Chromium
costs a second or more, a page a fraction of that.

Chromium comes from Debian: `apt-get install -y chromium` (`make install` does it). Without it the tests fail;
they never skip.
"""
import collections, itertools, json, queue, re, shutil, subprocess, threading, time, urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

# Nothing leaves the machine: every host but 127.0.0.1 fails to resolve, and any request that still tries goes to a
# closed local port (so whatever a page loads from a CDN fails, as offline); Chromium's own background traffic is off.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-domain-reliability", "--no-pings", "--disable-features=Translate,MediaRouter,OptimizationHints",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
         "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if p := shutil.which(name): return p
    pytest.fail("Chromium is not installed, so the pages cannot be opened: run `apt-get install -y chromium` "
                "(Debian/Ubuntu; `make install` does it).", pytrace=False)


class DevTools:
    "Headless Chromium on a temp profile, and one page (tab) of it driven through the DevTools protocol."

    def __init__(self, profile: Path, window_size: str | None = None, domains=("Page", "Runtime", "Network")):
        import websocket
        args = [chromium_path(), *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}",
                *([f"--window-size={window_size}"] if window_size else []), "about:blank"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ws_url, self.stderr = None, collections.deque(maxlen=200)
        deadline = time.monotonic() + 60
        while ws_url is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None: break
            self.stderr.append(line)
            if m := re.search(r"DevTools listening on (ws://\S+)", line): ws_url = m.group(1)
        if ws_url is None:
            self.proc.kill()
            raise AssertionError("Chromium did not start its DevTools server:\n" + "".join(self.stderr)[-3000:])
        # Keep reading Chromium's stderr (the last lines, for error messages): a full pipe would stall the browser.
        threading.Thread(target=lambda: [self.stderr.append(l) for l in self.proc.stderr], daemon=True).start()
        port = int(re.search(r":(\d+)/", ws_url).group(1))
        for _ in range(100):
            pages = [t for t in json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
                     if t["type"] == "page"]
            if pages: break
            time.sleep(0.1)
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        # A thread reads the websocket, so that waiting for an event can time out without breaking a frame in two.
        self._inbox = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ids, self.events = itertools.count(1), []
        for domain in domains: self.call(f"{domain}.enable")

    def _read(self):
        try:
            while True: self._inbox.put(json.loads(self.ws.recv()))
        except Exception as e:  # the browser closed, or the socket did
            self._inbox.put({"closed": repr(e)})

    def _next(self, timeout: float) -> dict | None:
        "The next message from the browser (an event is also kept in `self.events`), or None after `timeout` s."
        try: msg = self._inbox.get(timeout=max(timeout, 0))
        except queue.Empty: return None
        if "closed" in msg:
            raise AssertionError(f"the DevTools connection closed ({msg['closed']}); Chromium said:\n"
                                 + "".join(self.stderr)[-3000:])
        if "method" in msg: self.events.append(msg)
        return msg

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        "Send one command and return its result; keep the events that arrive meanwhile in `self.events`."
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while (msg := self._next(deadline - time.monotonic())) is not None:
            if msg.get("id") == i:
                if "error" in msg: raise AssertionError(f"{method}: {msg['error']}")
                return msg["result"]
        raise AssertionError(f"{method}: no answer from Chromium in {timeout} s")

    def js(self, expression: str):
        "The value of a JavaScript expression in the page."
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r: raise AssertionError(f"{expression!r} threw: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expression: str, timeout: float = 60):
        "Poll `expression` until it is truthy; return its value."
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if v := self.js(expression): return v
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {expression!r}")

    def wait_event(self, *methods: str, since: int = 0, timeout: float = 60) -> int:
        "The index in `self.events` of the first event from `since` on named one of `methods`, waiting for it if need be."
        deadline = time.monotonic() + timeout
        while True:
            if (i := next((i for i in range(since, len(self.events)) if self.events[i]["method"] in methods), None)) is not None:
                return i
            if self._next(deadline - time.monotonic()) is None:
                raise AssertionError(f"timed out after {timeout} s waiting for {' or '.join(methods)}")

    def screenshot(self, path: Path) -> Path:
        import base64
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self):
        try: self.ws.close()
        finally:
            self.proc.terminate()
            try: self.proc.wait(10)
            except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()


class PageDumper(DevTools):
    """What `chromium --headless --virtual-time-budget=3000 --dump-dom URL` gives, page after page in one browser:
    the DOM once the page has loaded and its scripts have had 3 s of virtual time (timers fire at once, and virtual
    time stands still while a fetch is pending), and the console messages of our own pages."""

    def __init__(self, profile: Path, budget_ms: int = 3000):
        # Log: the browser's own console entries (a resource that failed to load, ...), as Chromium's log has them.
        super().__init__(profile, domains=("Page", "Runtime", "Network", "Log"))
        self.budget_ms = budget_ms
        # Every page from the server, as with a fresh profile per page: a broken asset fails on each page that loads it.
        self.call("Network.setCacheDisabled", cacheDisabled=True)

    def dump(self, url: str, timeout: float = 60) -> tuple[str, list[str]]:
        "Load `url`; return the DOM after its scripts ran, and the console messages from our own origin."
        start = len(self.events)
        budget = dict(policy="pauseIfNetworkFetchesPending", budget=self.budget_ms)
        nav = self.call("Page.navigate", url=url)
        if nav.get("errorText"): raise AssertionError(f"Chromium could not open {url}: {nav['errorText']}")
        # Virtual time is the new document's (set before the navigation, it stays with the old renderer and the page
        # never loads); the budget runs from here.
        self.call("Emulation.setVirtualTimePolicy", **budget)
        loaded = self.wait_event("Page.loadEventFired", since=start, timeout=timeout)
        # The DOM once both the load event has fired and the budget has run out; should the budget run out before the
        # load event (it stands still while a fetch is pending, so it hardly can), the page gets it again from there.
        expired = self.wait_event("Emulation.virtualTimeBudgetExpired", since=start, timeout=timeout)
        while expired < loaded:
            self.call("Emulation.setVirtualTimePolicy", **budget)
            expired = self.wait_event("Emulation.virtualTimeBudgetExpired", since=expired + 1, timeout=timeout)
        dom = self.js("document.documentElement.outerHTML")
        return dom, self.console(url, self.events[start:])

    @staticmethod
    def console(url: str, events: list[dict]) -> list[str]:
        """The page's console, as Chromium's log (--enable-logging=stderr) writes it: `"message", source: URL (line)`,
        for uncaught exceptions ("Uncaught TypeError: ..."), console.* calls and the browser's own entries (a failed
        load), keeping those from our origin (an entry without a source is the page's own)."""
        origin = "{0.scheme}://{0.netloc}/".format(urlsplit(url))
        out = []
        for e in events:
            p, m = e["params"], e["method"]
            if m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                exc = d.get("exception") or {}
                what = exc.get("description") or exc.get("value") or ""
                text = f"{d.get('text', 'Uncaught')} {what}".strip() if what else d.get("text", "Uncaught")
                frames = (d.get("stackTrace") or {}).get("callFrames") or [{}]
                src, line = d.get("url") or frames[0].get("url") or url, d.get("lineNumber", 0) + 1
            elif m == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                frames = (p.get("stackTrace") or {}).get("callFrames") or [{}]
                src, line = frames[0].get("url") or url, frames[0].get("lineNumber", 0) + 1
                text = f"console.{p['type']}: {text}" if p["type"] in ("error", "warning", "assert") else text
            elif m == "Log.entryAdded":
                entry = p["entry"]
                if entry["level"] == "verbose": continue  # [Violation] timings and the like: not in Chromium's log
                # the icon a tab asks for by itself (--dump-dom never did; test_docs.py's request check skips it too)
                if urlsplit(entry.get("url", "")).path == "/favicon.ico": continue
                text, src, line = entry["text"], entry.get("url") or url, entry.get("lineNumber", 0) + 1
            else: continue
            msg = f'"{text}", source: {src} ({line})'
            if origin in msg: out.append(msg)
        return out
