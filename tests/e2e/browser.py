"""Headless Chromium driven over the DevTools protocol (through a pipe: no extra package).

A page opens with ``local_storage`` written before any of its scripts runs (the settings a user's
browser would remember, such as kedro-viz's dismissed feature hints), requests matching
``blocked`` answered with a network error, and the test waits on what the page shows
(``wait_for``: text that must appear) instead of a fixed time.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path
from shutil import which


def chromium() -> str | None:
    return which("chromium") or which("chromium-browser") or which("google-chrome")


def _above_nine(fds: tuple[int, int]) -> tuple[int, int]:
    """Both ends of a pipe moved to descriptors of 10 and above (the originals closed)."""
    import fcntl

    moved = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds)
    for fd in fds:
        os.close(fd)
    return moved[0], moved[1]


class Browser:
    """One headless Chromium with a fresh profile; ``with Browser(profile) as b: b.open(url)``."""

    def __init__(self, profile: Path, window: tuple[int, int] = (1280, 800)) -> None:
        self._profile = profile
        self._window = window
        self._next_id = 0
        self._buffer = b""
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> Browser:
        # Chromium reads commands from fd 3 and writes replies to fd 4.
        # The child's ends above fd 9, so that placing them on 3 and 4 overwrites neither.
        to_chrome_r, self._to_chrome = _above_nine(os.pipe())
        self._from_chrome, from_chrome_w = _above_nine(os.pipe())
        width, height = self._window
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--remote-debugging-pipe",
            f"--user-data-dir={self._profile}",
            f"--window-size={width},{height}",
        ]
        self._profile.mkdir(parents=True, exist_ok=True)
        self._log = self._profile.parent / f"{self._profile.name}-chromium.log"
        log = self._log.open("w")
        # bash (dash takes no descriptor above 9) moves the pipe's ends onto fds 3 and 4, then becomes Chromium.
        redirect = f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}'
        self._proc = subprocess.Popen(
            ["bash", "-c", redirect, chromium(), *flags, "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            pass_fds=(to_chrome_r, from_chrome_w),
        )
        log.close()
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.send("Browser.close", session=False, timeout=10)
        except Exception:  # already gone
            pass
        if self._proc is not None:
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        os.close(self._to_chrome)
        os.close(self._from_chrome)

    def send(self, method: str, *, session: bool = True, timeout: float = 60, **params) -> dict:
        """One protocol command; its result (events that arrive meanwhile are handled)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session and getattr(self, "_session", None):
            message["sessionId"] = self._session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium closed its pipe:\n{self._log.read_text()[-3000:]}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _event(self, event: dict) -> None:
        if event.get("method") == "Fetch.requestPaused":
            self.send_async(
                "Fetch.failRequest", requestId=event["params"]["requestId"], errorReason="Failed"
            )

    def send_async(self, method: str, **params) -> None:
        """A command whose reply is not waited for (answering a paused request)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        message["sessionId"] = self._session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")

    def open(
        self,
        url: str,
        *,
        wait_for: list[str],
        local_storage: dict[str, str] | None = None,
        blocked: list[str] | None = None,
        timeout: float = 90,
        settle: float = 1.5,
    ) -> str:
        """Load ``url``; return the page's visible text once every ``wait_for`` string shows
        (a ``TimeoutError`` naming the missing ones and the text so far otherwise)."""
        if local_storage:
            script = "".join(
                f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});"
                for k, v in local_storage.items()
            )
            self.send("Page.addScriptToEvaluateOnNewDocument", source=script)
        if blocked:
            self.send("Fetch.enable", patterns=[{"urlPattern": p} for p in blocked])
        self.send("Page.enable")
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            missing = [s for s in wait_for if s not in text]
            if not missing:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} never showed {missing}; it shows:\n{text[:3000]}")
            time.sleep(0.5)
        time.sleep(settle)  # let the last requests and animations finish
        return self.text()

    def evaluate(self, expression: str) -> object:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def text(self) -> str:
        return str(self.evaluate("document.body ? document.body.innerText : ''") or "")

    def html(self) -> str:
        return str(self.evaluate("document.documentElement.outerHTML") or "")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
