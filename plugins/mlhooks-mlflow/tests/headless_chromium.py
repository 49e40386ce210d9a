"""Headless Chromium driven through the DevTools protocol over a pipe.

``chromium --remote-debugging-pipe`` reads protocol commands from its descriptor 3 and
writes answers and events to its descriptor 4, each a JSON message ended by a NUL byte:
no port, no websocket and no package beyond the standard library. One page, one
command at a time: enough to open a page, wait for what it renders, read its DOM and
take screenshots.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The path of an installed Chromium (or Chrome), or None."""
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


_AT_3_AND_4 = """
import fcntl, os, sys
given = [int(fd) for fd in sys.argv[1:3]]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in given]  # out of the way of 3 and 4
os.dup2(high[0], 3)  # inheritable: Chromium gets them
os.dup2(high[1], 4)
for fd in {*given, *high} - {3, 4}:
    os.close(fd)
os.execv(sys.argv[3], sys.argv[3:])
"""


class BrowserError(RuntimeError):
    """The browser answered a command with an error, exited, or did not answer."""


class HeadlessChromium:
    """A headless Chromium with one page of ``width`` x ``height`` CSS pixels; its
    profile lives in ``profile`` (a folder of the test), what it prints in ``<profile>.log``.
    Close it with :meth:`close` (or use it as a context manager)."""

    def __init__(
        self, executable: str, profile: Path, width: int = 1400, height: int = 1000
    ) -> None:
        self._buffer = b""
        self._next_id = 0
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()
        arguments = [
            executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        # Chromium finds the pipe at descriptors 3 and 4: a small Python puts the ends
        # there and becomes Chromium (exec), so no code runs between fork and exec here.
        self.log = profile.with_name(profile.name + ".log")
        with open(self.log, "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-c", _AT_3_AND_4, str(to_browser), str(from_browser), *arguments],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(to_browser, from_browser),
                start_new_session=True,  # its helper processes go with it
            )
        os.close(to_browser)
        os.close(from_browser)
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            attached = self.send("Target.attachToTarget", targetId=target, flatten=True)
            self._session = attached["sessionId"]
            self.send("Page.enable", session=True)
            self.send(
                "Emulation.setDeviceMetricsOverride",
                session=True,
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            self.close()
            raise

    # -- the protocol ----------------------------------------------------------------

    def send(
        self, method: str, session: bool = False, timeout: float = 30, **params: Any
    ) -> dict[str, Any]:
        """Send one command (to the page when ``session``) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._receive(deadline, method)
            if answer.get("id") != self._next_id:
                continue  # an event, or an answer to nothing we wait for
            if "error" in answer:
                raise BrowserError(f"{method}: {answer['error']}")
            result: dict[str, Any] = answer.get("result", {})
            return result

    def _receive(self, deadline: float, method: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{method}: no answer from the browser")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise BrowserError(f"{method}: the browser exited")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    # -- what a test does --------------------------------------------------------------

    def open(self, url: str) -> None:
        """Navigate the page to ``url`` (a single-page app renders after this returns:
        wait for what it shows with :meth:`wait_for`)."""
        self.send("Page.navigate", session=True, url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send(
            "Runtime.evaluate",
            session=True,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def text(self) -> str:
        """The text the page shows (``document.body.innerText``)."""
        return str(self.evaluate("document.body ? document.body.innerText : ''"))

    def html(self) -> str:
        """The page's DOM as HTML."""
        return str(self.evaluate("document.documentElement.outerHTML"))

    def wait_for(self, predicate: str, timeout: float = 60, why: str = "") -> Any:
        """Poll a JavaScript expression until it is truthy; its value. Raises
        :class:`BrowserError` with the page's text when it does not become so."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(predicate)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(
                    f"waited {timeout}s for {why or predicate}; the page shows:\n"
                    f"{self.text()[:3000]}"
                )
            time.sleep(0.25)

    def wait_for_text(self, *needles: str, timeout: float = 60) -> str:
        """Wait until the page's text holds every one of ``needles``; that text."""
        check = " && ".join(f"document.body.innerText.includes({json.dumps(n)})" for n in needles)
        self.wait_for(f"document.body !== null && {check}", timeout, why=f"the text {needles}")
        return self.text()

    def screenshot(self, path: Path) -> Path:
        """The page as it looks now, written to ``path`` as PNG."""
        data = self.send("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Close the browser (asked, then killed) and the pipe's ends."""
        with contextlib.suppress(BrowserError, OSError):
            self.send("Browser.close", timeout=5)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        for descriptor in (self._to_browser, self._from_browser):
            os.close(descriptor)

    def __enter__(self) -> HeadlessChromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
