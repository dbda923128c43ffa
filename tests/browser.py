"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``):
open a page, wait for text to render, click, read the rendered text, take a screenshot.

No driver package: Chromium itself, with JSON messages on file descriptors 3 (to the browser)
and 4 (from it), each ended by a NUL byte. ``playwright install`` cannot download browsers
offline; Debian's ``chromium`` package is what ``.ci/run`` installs.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium with one page."""

    def __init__(self, binary: str, width: int = 1600, height: int = 1000) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        cmd = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-pipe",
            f"--user-data-dir={self._profile.name}",
            f"--window-size={width},{height}",
            "about:blank",
        ]

        def wire() -> None:
            # The browser reads commands on its fd 3 and writes replies on its fd 4: move the
            # pipe ends out of the way first, so that neither overwrites the other.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self._proc = subprocess.Popen(
            cmd,
            # 3 and 4 stay open through the exec (they are the pipes once wire() ran).
            pass_fds=(3, 4),
            preexec_fn=wire,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._ids = itertools.count(1)
        self._buffer = b""
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self._session = self.call(
            "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}
        )["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Runtime.enable", session=True)

    def call(self, method: str, params: dict | None = None, session: bool = False) -> Any:
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == message["id"]:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", {"url": url}, session=True)

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, *wanted: str, timeout: float = 90) -> str:
        """Wait until the rendered page shows every string in ``wanted``; returns its text."""
        deadline = time.monotonic() + timeout
        while True:
            shown = self.text()
            if all(w in shown for w in wanted):
                return shown
            if time.monotonic() > deadline:
                missing = [w for w in wanted if w not in shown]
                raise AssertionError(f"the page never showed {missing}; it shows:\n{shown[:3000]}")
            time.sleep(0.5)

    def click_text(self, text: str, selector: str = "button, a, [role=button], [role=tab]") -> None:
        """Click the first element matching ``selector`` whose text is ``text``."""
        found = self.evaluate(
            f"""(() => {{
                const items = [...document.querySelectorAll({json.dumps(selector)})];
                const want = {json.dumps(text)};
                const hit = items.find(e => e.innerText && e.innerText.trim() === want);
                if (!hit) return false;
                hit.click();
                return true;
            }})()"""
        )
        if not found:
            raise AssertionError(f"no {selector} reads {text!r}")

    def click_selector(self, selector: str) -> int:
        """Click every element matching ``selector``; returns how many."""
        return self.evaluate(
            f"""(() => {{
                const items = [...document.querySelectorAll({json.dumps(selector)})];
                items.forEach(e => e.click());
                return items.length;
            }})()"""
        )

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, OSError):
            self.call("Browser.close")
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
