"""Debian's chromium, headless, for the web page's tests and benchmark (never downloaded).

The flags keep it from reaching out to the network at start (this machine's network is
closed: without them it retries refused connections many at a time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(playwright: Any, profile: Path | str, **options: Any) -> Any:
    """A persistent browser context of Debian's chromium in `profile` (a fresh folder)."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium")
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), args=ARGS, headless=True, **options
    )
