"""What the browser tests of the analysis page share: the page served on 127.0.0.1 from this
process, Debian's Chromium driven by Playwright, and screenshots.

Chromium is the system one (``/usr/bin/chromium``, installed by ``./dev``): Playwright's
own browser download cannot be reached here. Every network feature Chromium has of its
own is off, and each browser gets a fresh profile. Screenshots go to
``$IOTCAST_UI_SCREENSHOTS`` when set (``docs/ui/`` holds three of them), else beside
the test's temporary files. :func:`mixed_file` writes a file of two kinds of device with
values to drop and rows to refuse, for the page and for the figures it shows.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from iotcast.stack import free_port
from telemetry.csvfile import write_csv
from telemetry.generate import generate

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """The Dash ``app`` on a free 127.0.0.1 port, in a thread; yields its URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="ui-server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.shutdown()
        thread.join(10)


@contextlib.contextmanager
def browser_page(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A page of a fresh headless Chromium; every request it makes is kept in ``page.urls``."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium is missing: ./dev setup installs it (apt chromium)"
    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
            accept_downloads=True,
        )
        try:
            page = context.new_page()
            page.urls = []
            page.on("request", lambda r: page.urls.append(r.url))
            page.set_default_timeout(60_000)
            yield page
        finally:
            context.close()


def pick(page: Any, dropdown: str, text: str) -> None:
    """Choose the option shown as ``text`` in the ``dcc.Dropdown`` with id ``dropdown`` as a
    person does with the mouse: open it, wait for the option, click it; then wait until the
    dropdown shows it.

    Not by typing and Enter: Dash 4.0's dropdown ignores Enter in its search box, and from
    4.1 on the first key typed lands on the closed dropdown's button, which hands the focus
    to the search box a frame later; a key pressed meanwhile is lost ("lnear"), notably
    while the options are still on their way from a callback, and Enter then selects
    nothing. Clicking an option that is already chosen would clear it, so that one is left.
    """
    from playwright.sync_api import expect

    trigger = page.locator(f"#{dropdown}")
    trigger.click()
    expect(trigger).to_have_attribute("aria-expanded", "true", timeout=30_000)
    # the open list is the element the button says it controls
    listbox = page.locator(f'[id="{trigger.get_attribute("aria-controls")}"]')
    option = listbox.get_by_role("option", name=text, exact=True)  # waits for late options
    if option.get_attribute("aria-selected") == "true":
        page.keyboard.press("Escape")
    else:
        option.click()
    expect(trigger).to_have_text(text, timeout=30_000)


def screenshot(page: Any, folder: Path, name: str) -> Path:
    """A full-page PNG of the page's current state, in ``$IOTCAST_UI_SCREENSHOTS`` or ``folder``."""
    where = Path(os.environ.get("IOTCAST_UI_SCREENSHOTS") or folder)
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# A temperature-and-humidity device and a temperature-only one, with values to drop or clip
# and rows with nothing usable left.
TH, T_ONLY = "b8:27:eb:bf:9d:51", "00:0f:00:70:91:0a"


def mixed_file(path: Path) -> Path:
    """A quarter day of TH (temp+humidity) and T_ONLY (temp); in TH's rows, 4 humidity cells
    unreadable, 2 beyond 0-100 %, 3 saturated at 100.5 % and one temperature of 999 °C;
    then 3 rows refused whole (2 without any sensor value, 1 from 1985)."""
    sets = (("temp", "humidity"), ("temp",))
    write_csv(path, generate(days=0.25, seed=4, devices=2, sensors=sets))
    with open(path, newline="") as f:
        header, *body = list(csv.reader(f))
    th = [r for r in body if r[1] == TH]
    for rows, column, value in (
        (th[10:14], 3, "hot"),
        (th[20:22], 3, "130.0"),
        (th[30:33], 3, "100.5"),
        (th[40:41], 8, "999.0"),
    ):
        for r in rows:
            r[column] = value
    body += [[th[-1][0], TH, *[""] * 7]] * 2 + [["5.0E8", T_ONLY, *[""] * 6, "21.0"]]
    with open(path, "w", newline="") as f:
        csv.writer(f, quoting=csv.QUOTE_ALL).writerows([header, *body])
    return path
