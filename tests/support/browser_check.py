"""Opens a page in Debian's headless Chromium over the DevTools protocol and says what went wrong.

What counts as wrong: a console error or an uncaught exception (Runtime domain), an error logged by the
browser itself, such as a resource that failed to load (Log domain), any request other than the page
itself (Network domain; `data:` URLs are not requests), and a chart container (`figure.chart`) without
an `<svg>` that has a size and drawn elements. It also takes a screenshot and prints the PDF, so a test
can look at both.
"""
from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import websocket

from pulse.report.chromium import base_flags, find_chromium, throwaway_profile

CHART_PROBE = """
Array.from(document.querySelectorAll('figure.chart')).map(figure => {
  const svg = figure.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const drawn = svg ? svg.querySelectorAll('path, rect, use, line, polyline, polygon, circle').length : 0;
  return {name: figure.dataset.chart || '?', drawn: drawn, width: box.width, height: box.height};
})
"""
MIN_DRAWN = 10  # a chart with axes, ticks and a few bars has far more


@dataclass
class PageCheck:
    url: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    charts: list[dict] = field(default_factory=list)
    screenshot_png: bytes = b""
    pdf: bytes = b""

    @property
    def empty_charts(self) -> list[str]:
        return [c["name"] for c in self.charts if c["drawn"] < MIN_DRAWN or not c["width"] or not c["height"]]

    @property
    def problems(self) -> list[str]:
        return ([f"console error: {text}" for text in self.console_errors]
                + [f"network request: {url}" for url in self.requests]
                + [f"chart did not render: {name}" for name in self.empty_charts])


class DevTools:
    """A minimal DevTools-protocol client over one page's websocket: commands, and every event kept."""

    def __init__(self, ws_url: str, timeout_s: float) -> None:
        self.socket = websocket.create_connection(ws_url, timeout=timeout_s, suppress_origin=True)
        self.events: list[dict] = []
        self._next_id = 0

    def call(self, method: str, **params: object) -> dict:
        self._next_id += 1
        self.socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(event.get("method") == method for event in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout_s} s")
            self.socket.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.socket.recv()))

    def drain(self, quiet_s: float) -> None:
        """Collects events until none has come for `quiet_s`."""
        self.socket.settimeout(quiet_s)
        try:
            while True:
                self.events.append(json.loads(self.socket.recv()))
        except websocket.WebSocketTimeoutException:
            pass

    def close(self) -> None:
        self.socket.close()


def _devtools_port(profile: Path, browser: subprocess.Popen, timeout_s: float) -> int:
    marker = profile / "DevToolsActivePort"  # Chromium writes its chosen port here
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().splitlines()[0])
        if browser.poll() is not None:
            raise RuntimeError(f"chromium exited with {browser.returncode}")
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


def _page_socket(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
        targets = json.load(answer)
    return next(target["webSocketDebuggerUrl"] for target in targets if target["type"] == "page")


def _findings(check: PageCheck, events: list[dict]) -> None:
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            check.console_errors.append(" ".join(str(arg.get("value", arg.get("description", "")))
                                                 for arg in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            check.console_errors.append(details.get("exception", {}).get("description", details["text"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            check.console_errors.append(f"{params['entry']['text']} {params['entry'].get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if url != check.url and not url.startswith("data:"):
                check.requests.append(url)


def check_page(page: Path, *, width: int = 1200, height: int = 900, timeout_s: float = 90.0) -> PageCheck:
    """Loads `page` (a local file) in a fresh headless Chromium and reports what went wrong."""
    check = PageCheck(url=page.resolve().as_uri())
    with throwaway_profile("pulse-cdp-") as profile:
        browser = subprocess.Popen([find_chromium(), *base_flags(profile), "--remote-debugging-port=0",
                                    "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            tools = DevTools(_page_socket(_devtools_port(profile, browser, timeout_s)), timeout_s)
            try:
                for domain in ("Runtime", "Log", "Network", "Page"):
                    tools.call(f"{domain}.enable")
                tools.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                           mobile=False)
                tools.call("Page.navigate", url=check.url)
                tools.wait_for("Page.loadEventFired", timeout_s)
                tools.drain(quiet_s=1.0)  # late console messages and failed loads
                check.charts = tools.call("Runtime.evaluate", expression=CHART_PROBE,
                                          returnByValue=True)["result"]["value"]
                check.screenshot_png = base64.b64decode(tools.call("Page.captureScreenshot", format="png")["data"])
                check.pdf = base64.b64decode(tools.call("Page.printToPDF", printBackground=True,
                                                        preferCSSPageSize=True)["data"])
                tools.drain(quiet_s=0.3)
                _findings(check, tools.events)
            finally:
                tools.close()
        finally:
            browser.terminate()
            try:
                browser.wait(timeout=15)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()
    return check


def pixel_stddev(png: Path) -> float:
    """Standard deviation of the grey levels: about 0 for a blank page."""
    from PIL import Image, ImageStat

    with Image.open(png) as image:
        return ImageStat.Stat(image.convert("L")).stddev[0]


def first_pdf_page(pdf: Path, out_dir: Path) -> Path:
    """The PDF's first page rendered by poppler's pdftoppm, as PNG."""
    prefix = out_dir / "page"
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(prefix)],
                   check=True, capture_output=True, timeout=60)
    return prefix.with_suffix(".png")
