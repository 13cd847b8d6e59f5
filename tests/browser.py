"""Render an HTML file in a real headless Chromium and report what a reader sees.

No Python package is needed: Chromium is driven over the DevTools protocol on its
``--remote-debugging-pipe`` (NUL-separated JSON on file descriptors 3 and 4), with the
standard library only. The browser is Debian's ``chromium`` package (``scripts/setup.sh``
installs it), or whatever ``ERRPROP_CHROMIUM`` names, or a chromium/chrome on ``PATH``.

    from browser import render, require_browser

    def test_report(tmp_path):
        require_browser()
        page = render(tmp_path / "report.html")
        assert "Verdict" in page.text
        assert page.images and all(img.decoded for img in page.images)
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

_CANDIDATES = (
    "/usr/lib/chromium/chromium",  # Debian's binary, without the /usr/bin wrapper's extras
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
    "headless_shell",
)


@dataclass(frozen=True)
class Image:
    """One ``<img>`` as the browser has it after the page loaded."""

    src_prefix: str  # the first 40 characters of ``src`` (``data:image/png;base64,...`` when embedded)
    complete: bool
    natural_width: int
    natural_height: int

    @property
    def decoded(self) -> bool:
        """True when the browser loaded and decoded the image (a broken one has zero size)."""
        return self.complete and self.natural_width > 0 and self.natural_height > 0


@dataclass(frozen=True)
class Rendered:
    """What a reader of the page sees."""

    text: str  # document.body.innerText
    images: list[Image]
    verdict: str | None  # innerText of the element with id="verdict", None when there is none
    table_rows: int  # number of <tr> inside <table>s
    screenshot: Path  # PNG of the whole page
    title: str = ""
    external_requests: list[str] = field(default_factory=list)  # anything fetched besides the file
    js_errors: list[str] = field(default_factory=list)  # uncaught exceptions and console.error


def find_browser() -> str | None:
    """Path of a Chromium-family executable, or None."""
    env = os.environ.get("ERRPROP_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else shutil.which(env)
    for name in _CANDIDATES:
        path = name if os.path.isabs(name) else shutil.which(name)
        if path and os.access(path, os.X_OK):
            return path
    return None


def browser_available() -> bool:
    return find_browser() is not None


def require_browser() -> str:
    """Return the browser path; skip the calling test when there is none (fail under CI=true)."""
    import pytest

    path = find_browser()
    if path is None:
        reason = (
            "no headless Chromium found (run scripts/setup.sh, which installs Debian's chromium, "
            "or set ERRPROP_CHROMIUM)"
        )
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


class BrowserError(RuntimeError):
    pass


class _Pipe:
    """A DevTools protocol connection over Chromium's --remote-debugging-pipe."""

    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int, deadline: float):
        self.proc, self.wfd, self.rfd, self.deadline = proc, to_browser, from_browser, deadline
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _read_message(self) -> dict:
        while b"\0" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("timed out waiting for Chromium")
            ready, _, _ = select.select([self.rfd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.rfd, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg: dict = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self.wfd, data) :]
        while True:
            reply = self._read_message()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method: str, session: str | None = None) -> dict:
        seen = 0
        while True:
            for ev in self.events[seen:]:
                if ev["method"] == method and (session is None or ev.get("sessionId") == session):
                    return ev
            seen = len(self.events)
            ev = self._read_message()
            if "method" in ev:
                self.events.append(ev)


_PROBE = """(async () => {
  await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
  if (document.fonts) await document.fonts.ready;
  const v = document.getElementById('verdict');
  return {
    text: document.body ? document.body.innerText : '',
    title: document.title,
    verdict: v ? v.innerText : null,
    table_rows: document.querySelectorAll('table tr').length,
    images: [...document.images].map(i => ({
      src_prefix: (i.getAttribute('src') || '').slice(0, 40),
      complete: i.complete, natural_width: i.naturalWidth, natural_height: i.naturalHeight})),
  };
})()"""


def _high_fd(fd: int) -> int:
    """Move fd to a number >= 10 with close-on-exec, so dup2 onto 3 and 4 cannot clobber it."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


def render(
    html_path: str | os.PathLike,
    screenshot: str | os.PathLike | None = None,
    width: int = 1280,
    height: int = 900,
    timeout: float = 60.0,
) -> Rendered:
    """Load ``html_path`` in headless Chromium and return what it shows.

    The screenshot (whole page, PNG) goes to ``screenshot``, by default beside the file as
    ``<name>.screenshot.png``. Raises BrowserError when there is no browser or it fails.
    """
    html = Path(html_path).resolve()
    if not html.is_file():
        raise FileNotFoundError(html)
    shot = Path(screenshot) if screenshot else html.with_name(html.stem + ".screenshot.png")
    exe = find_browser()
    if exe is None:
        raise BrowserError("no headless Chromium found (run scripts/setup.sh or set ERRPROP_CHROMIUM)")

    cmd_r, cmd_w = (_high_fd(fd) for fd in os.pipe())  # we write commands, Chromium reads fd 3
    out_r, out_w = (_high_fd(fd) for fd in os.pipe())  # Chromium writes fd 4, we read

    def child_fds() -> None:
        os.dup2(cmd_r, 3)
        os.dup2(out_w, 4)

    with tempfile.TemporaryDirectory(prefix="errprop-chromium-") as profile:
        args = [
            exe,
            "--headless",
            "--no-sandbox",  # root in containers/CI; the page is our own file
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--mute-audio",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--window-size={width},{height}",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=child_fds, close_fds=False
        )
        os.close(cmd_r)
        os.close(out_w)
        cdp = _Pipe(proc, cmd_w, out_r, time.monotonic() + timeout)
        try:
            target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            sid = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Network"):
                cdp.send(f"{domain}.enable", session=sid)
            nav = cdp.send("Page.navigate", {"url": html.as_uri()}, session=sid)
            if nav.get("errorText"):
                raise BrowserError(f"could not load {html}: {nav['errorText']}")
            cdp.wait_event("Page.loadEventFired", session=sid)
            probe = cdp.send(
                "Runtime.evaluate",
                {"expression": _PROBE, "awaitPromise": True, "returnByValue": True},
                session=sid,
            )
            if "exceptionDetails" in probe:
                raise BrowserError(f"page probe failed: {probe['exceptionDetails']}")
            page = probe["result"]["value"]
            size = cdp.send("Page.getLayoutMetrics", session=sid)["cssContentSize"]
            clip = {
                "x": 0,
                "y": 0,
                "width": max(1, min(int(size["width"]), 4096)),
                "height": max(1, min(int(size["height"]), 16384)),
                "scale": 1,
            }
            png = cdp.send(
                "Page.captureScreenshot",
                {"format": "png", "clip": clip, "captureBeyondViewport": True},
                session=sid,
            )["data"]
            shot.parent.mkdir(parents=True, exist_ok=True)
            shot.write_bytes(base64.b64decode(png))
            try:
                cdp.send("Browser.close")
            except BrowserError:
                pass
        except BrowserError as err:
            log.seek(0)
            tail = log.read()[-2000:].decode(errors="replace")
            raise BrowserError(f"{err}\n--- chromium output ---\n{tail}") from None
        finally:
            for fd in (cmd_w, out_r):
                os.close(fd)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()

    page_url = html.as_uri()
    external = [
        ev["params"]["request"]["url"]
        for ev in cdp.events
        if ev["method"] == "Network.requestWillBeSent"
        and not ev["params"]["request"]["url"].startswith(("data:", "about:", page_url))
    ]
    errors = [
        ev["params"]["exceptionDetails"].get("exception", {}).get("description")
        or ev["params"]["exceptionDetails"].get("text", "")
        for ev in cdp.events
        if ev["method"] == "Runtime.exceptionThrown"
    ] + [
        " ".join(str(a.get("value", a.get("description", ""))) for a in ev["params"]["args"])
        for ev in cdp.events
        if ev["method"] == "Runtime.consoleAPICalled" and ev["params"]["type"] == "error"
    ]
    return Rendered(
        text=page["text"],
        images=[Image(**img) for img in page["images"]],
        verdict=page["verdict"],
        table_rows=page["table_rows"],
        screenshot=shot,
        title=page["title"],
        external_requests=external,
        js_errors=errors,
    )
