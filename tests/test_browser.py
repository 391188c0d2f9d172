"""The real client: every viewer driven in JupyterLab, in headless Chromium, by mouse and keyboard.

A JupyterLab server is started on a free loopback port over a copy of ``notebooks/`` (so nothing the
browser does can touch the committed notebooks), in the smoke profile. Each notebook with a viewer is
opened, all its cells are run from the Run menu (``interactive = True``, the notebook's default), and
every control of the viewer is moved as a person would: a slider's handle dragged, a dropdown opened
and an entry chosen, a number or a prompt typed and Enter pressed. After each move the figure must
change, stay the only figure in the viewer, and answer within ``ANSWER_SECONDS``; at the end no
Python error may be in the notebook or the kernel's log and no error in the browser's console.
Screenshots and each answer's time go to ``runs/browser/<time>/``.

It needs Debian's Chromium (``apt-get install -y chromium``) and Python Playwright (the ``test``
extra); without Chromium it is skipped, and says so. ``.ci/run`` installs both.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cotlab.io import RUNS_DIR, atomic_write_json, new_run_dir, timestamp
from cotlab.runner import list_notebooks

CHROMIUM = "/usr/bin/chromium"
ANSWER_SECONDS = 10.0  # a control's move to a new figure, in the smoke profile on two cores
RUN_ALL_SECONDS = 300.0  # all cells of one notebook, in the smoke profile
VIEWER_NOTEBOOKS = [nb for nb in list_notebooks() if ".widget()" in nb.read_text()]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"the browser test needs Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def out_dir() -> Path:
    return new_run_dir(RUNS_DIR / "browser", timestamp())


@pytest.fixture(scope="module")
def lab(tmp_path_factory, out_dir):
    """A JupyterLab server over a copy of the notebooks: ``(url, log_path)``."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(list_notebooks()[0].parent, root / "notebooks", ignore=shutil.ignore_patterns(".*"))
    settings = root / "settings" / "@jupyterlab"
    # no news pop-up, no update check, no autosave: the page shows only what the test does
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    (settings / "docmanager-extension").mkdir(parents=True)
    (settings / "docmanager-extension" / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    port = free_port()
    env = {**os.environ, "COTLAB_PROFILE": "smoke", "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"), "PYTHONUNBUFFERED": "1"}
    log_path = out_dir / "jupyterlab.log"
    log = open(log_path, "w")
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
               "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={root}",
               "--ServerApp.port_retries=0"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"JupyterLab did not start: see {log_path}")
            time.sleep(0.5)
    yield url, log_path
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


class Viewer:
    """The viewer's widget box on the page and its one figure."""

    def __init__(self, page):
        self.page = page
        self.box = page.locator(".jp-OutputArea-output .widget-vbox").last
        self.output = self.box.locator(".widget-output")

    def figure(self) -> str:
        """The figure's PNG (its data URL); asserts it is the only figure in the viewer."""
        images = self.output.locator("img")
        assert images.count() == 1, f"{images.count()} figures in the viewer: replaced, not appended, is expected"
        return images.first.get_attribute("src")

    def answer(self, before: str, what: str) -> float:
        """Seconds until the figure differs from ``before``."""
        start = time.monotonic()
        while time.monotonic() - start < 60:
            images = self.output.locator("img")
            if images.count() == 1 and images.first.get_attribute("src") != before:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"{what}: the figure did not change within 60 s")
        seconds = time.monotonic() - start
        self.page.wait_for_timeout(300)  # a second figure, appended late, would show now
        self.figure()
        return seconds


def drag_slider(page, slider) -> None:
    """Drag a slider's handle with the mouse across its track, to 10 % of it from the far end: a new
    value for any slider of two or more values (the middle of a 1 … 2 slider rounds back to 2)."""
    track = slider.locator(".noUi-base").bounding_box()
    handle = slider.locator(".noUi-handle").bounding_box()
    x = handle["x"] + handle["width"] / 2
    fraction = 0.1 if x > track["x"] + track["width"] / 2 else 0.9
    page.mouse.move(x, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + fraction * track["width"], handle["y"] + handle["height"] / 2, steps=8)
    page.mouse.up()


def choose(page, dropdown, index: int) -> None:
    """Open a dropdown with the mouse, then choose entry ``index`` (an open list keeps the arrow keys)."""
    select = dropdown.locator("select")
    select.click()
    select.select_option(index=index)
    page.keyboard.press("Escape")


def type_into(page, box, text: str) -> None:
    """Click a text or number box, replace its content by typing, press Enter."""
    field = box.locator("input")
    field.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def wait_until_idle(page, seconds: float = 1.5) -> None:
    """Wait until the kernel has stayed idle for ``seconds`` (between two queued cells it is idle for
    only a moment)."""
    idle = page.get_by_text("Python 3 (ipykernel) | Idle")
    deadline, since = time.monotonic() + RUN_ALL_SECONDS, None
    while time.monotonic() < deadline:
        if idle.count():
            since = since or time.monotonic()
            if time.monotonic() - since >= seconds:
                return
        else:
            since = None
        time.sleep(0.1)
    raise AssertionError(f"the notebook's cells were still running after {RUN_ALL_SECONDS:.0f} s")


def menu(page, name: str, entry: str) -> None:
    """Click a menu of the menu bar, then one of its entries."""
    page.get_by_role("menuitem", name=name, exact=True).click()
    page.get_by_role("menuitem", name=entry, exact=True).click()


SHUTDOWN_RACES = ("WebSocketClosedError", "zmq gc socket requested during shutdown")


def python_errors(log: str) -> list[str]:
    """The tracebacks in a part of the server's log, one per log record, but for the two races at a
    kernel's shutdown (not errors of the notebook or its kernel's work): tornado's
    ``WebSocketClosedError``, the server writing to a websocket the browser had already closed, and
    pyzmq's "gc socket requested during shutdown", the closing kernel flushing its output stream."""
    records = re.split(r"\n(?=\[[A-Z] \d{4}-|Task exception was never retrieved|ERROR:tornado)", log)
    return [r for r in records if "Traceback" in r and not any(race in r for race in SHUTDOWN_RACES)]


def test_python_errors_reads_the_records_that_hold_a_traceback():
    log = ("[I 2026-11-29 19:43:54.613 ServerApp] Starting buffering\n"
           "Task exception was never retrieved\nTraceback (most recent call last):\n"
           "tornado.websocket.WebSocketClosedError\n"
           "[I 2026-11-29 19:43:57.566 LabApp] Build is up to date\n"
           "[E 2026-11-29 19:44:00.000 ServerApp] Uncaught exception\nTraceback (most recent call last):\n"
           "ValueError: boom\n[I 2026-11-29 19:44:01.000 LabApp] fine\n"
           "ERROR:tornado.general:Uncaught exception in ZMQStream callback\nTraceback (most recent call last):\n"
           "RuntimeError: zmq gc socket requested during shutdown\n[I 2026-11-29 19:44:02.000 LabApp] fine")
    errors = python_errors(log)
    assert len(errors) == 1 and "ValueError: boom" in errors[0]
    assert python_errors("[I 2026-11-29 19:43:57.566 LabApp] Build is up to date") == []


@pytest.mark.slow
@pytest.mark.parametrize("notebook", VIEWER_NOTEBOOKS, ids=[nb.stem for nb in VIEWER_NOTEBOOKS])
def test_every_control_of_the_viewer_changes_its_one_figure(notebook, lab, browser, out_dir):
    url, log_path = lab
    log_start = log_path.stat().st_size  # the server's log is shared: this notebook's part starts here
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    console_errors = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    page.goto(f"{url}/lab/workspaces/{notebook.stem}/tree/notebooks/{notebook.name}")  # a new workspace: this notebook alone
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
    menu(page, "Run", "Run All Cells")
    viewer = Viewer(page)
    viewer.output.locator("img").wait_for(timeout=RUN_ALL_SECONDS * 1000)
    wait_until_idle(page)  # the cells after the viewer's have run too: a move is answered at once
    viewer.box.scroll_into_view_if_needed()
    shot = lambda name: page.screenshot(path=str(out_dir / f"{notebook.stem}-{name}.png"))
    shot("0-start")

    answers = {}
    moves = 0

    def moved(what):
        nonlocal moves
        moves += 1
        answers[what] = round(viewer.answer(before, what), 3)
        viewer.box.scroll_into_view_if_needed()
        shot(f"{moves}-{what.replace(' ', '_')}")

    for i in range(viewer.box.locator(".widget-dropdown").count()):
        dropdown = viewer.box.locator(".widget-dropdown").nth(i)
        n = dropdown.locator("option").count()
        current = dropdown.locator("select").evaluate("s => s.selectedIndex")
        before = viewer.figure()
        choose(page, dropdown, (current + 1 + 5 * i) % n)
        moved(f"dropdown {i}")
    for i in range(viewer.box.locator(".widget-slider").count()):
        slider = viewer.box.locator(".widget-slider").nth(i)
        before = viewer.figure()
        drag_slider(page, slider)
        moved(f"slider {i}")
    for i in range(viewer.box.locator(".widget-text, .widget-inline-hbox:has(input[type=number])").count()):
        box = viewer.box.locator(".widget-text, .widget-inline-hbox:has(input[type=number])").nth(i)
        before = viewer.figure()
        kind = box.locator("input").get_attribute("type")
        type_into(page, box, "1" if kind == "number" else "a photo of two circles")
        moved(f"text {i}")

    atomic_write_json(out_dir / f"{notebook.stem}-answers.json", answers)
    controls = viewer.box.locator(".widget-inline-hbox:has(input, select, .noUi-handle)").count()
    assert moves == controls >= 2, f"{moves} of the viewer's {controls} controls moved"
    slow = {k: v for k, v in answers.items() if v > ANSWER_SECONDS}
    assert not slow, f"answers slower than {ANSWER_SECONDS} s: {slow}"
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
    assert not tracebacks, f"a Python error in the notebook: {tracebacks[0][:500]}"
    with open(log_path) as log:
        log.seek(log_start)
        logged = python_errors(log.read())
    assert not logged, f"a Python error in the kernel's log ({log_path}): {logged[0][:500]}"
    assert not console_errors, f"browser console errors: {console_errors[:3]}"
    menu(page, "Kernel", "Shut Down Kernel")  # the next notebook gets both cores
    context.close()
