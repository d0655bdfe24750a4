"""Debian's headless Chromium, used as a printer: the report's PDF and PNG screenshots of pages or SVGs.

Each call runs one short-lived browser with a throw-away profile; nothing in the pages asks for the
network, and background services (updates, sync, metrics) are switched off."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pulse.errors import PulseError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
TIMEOUT_S = 120


class ChromiumMissing(PulseError, RuntimeError):
    """No Chromium on PATH (Debian: `apt-get install chromium`; `deploy/setup.sh` installs it)."""


def find_chromium() -> str:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    raise ChromiumMissing("Chromium is not installed: apt-get install chromium (deploy/setup.sh does)")


def base_flags(profile: Path) -> list[str]:
    flags = ["--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--no-default-browser-check",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--mute-audio", f"--user-data-dir={profile}"]
    if os.geteuid() == 0:  # Chromium refuses to start as root inside its sandbox
        flags.append("--no-sandbox")
    return flags


@contextmanager
def throwaway_profile(prefix: str = "pulse-chromium-") -> Iterator[Path]:
    """A fresh profile folder, removed afterwards. Chromium's helper processes (crash handler, utility) can
    still write into it for a moment after the browser itself exited, so removal is retried for up to
    ~2 s instead of failing the caller with "Directory not empty"; whatever is still left then stays."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        for _ in range(20):
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                break
            time.sleep(0.1)


def _run(args: list[str], output: Path) -> None:
    with throwaway_profile() as profile:
        command = [find_chromium(), *base_flags(profile), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if result.returncode != 0 or not output.exists() or output.stat().st_size == 0:
        raise RuntimeError(f"chromium failed ({result.returncode}) writing {output}: {result.stderr[-2000:]}")


def print_pdf(page: Path, pdf: Path) -> None:
    """The page printed as the browser prints it (A4 from the page's @page rule), without header or footer."""
    pdf.unlink(missing_ok=True)
    _run(["--no-pdf-header-footer", "--run-all-compositor-stages-before-draw",
          f"--print-to-pdf={pdf.resolve()}", page.resolve().as_uri()], pdf)


def screenshot(page: Path, png: Path, width: int, height: int) -> None:
    """The top `width` × `height` CSS pixels of the page as a PNG."""
    png.unlink(missing_ok=True)
    _run([f"--window-size={width},{height}", "--run-all-compositor-stages-before-draw",
          f"--screenshot={png.resolve()}", page.resolve().as_uri()], png)
