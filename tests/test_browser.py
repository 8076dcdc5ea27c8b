"""End to end in a real browser: JupyterLab on localhost, headless Debian Chromium, Selenium.

A small clustered workspace (lfw-dev faces with their photos when ../shared is there,
synthetic faces otherwise) is opened by a copy of ``notebooks/06_labeling.ipynb`` with the
workspace parameter set; the test runs all cells in JupyterLab, then labels the largest
cluster the way a person does -- click a wrong face to drop it, type a name in the name box,
click Label, click the confirmation -- and checks in the catalog that the new person has
exactly the faces it should. Screenshots go to ``reports/browser/`` (``06_labeling-confirm
.png`` at the question, ``06_labeling.png`` after it, ``06_labeling-failed.png`` on failure).

Needs ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (``scripts/browser_setup.sh``)
and the dev extra (selenium, jupyterlab). Without them the test is skipped, unless ``CI``
is set, where it fails: CI must run it. Nothing is downloaded: the driver is Debian's, and
the browser runs with the network features that phone home turned off.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from facelab.people import clusters, naming
from facelab.store.catalog import Catalog

from .conftest import LFW, REPO

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = REPO / "reports" / "browser"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1800"]


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test but {what}; run scripts/browser_setup.sh "
                    "and pip install -e '.[dev]'")
    pytest.skip(what)


def _prerequisites() -> None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            _missing(f"{path} is not installed")
    for module in ("selenium", "jupyterlab", "papermill", "ipywidgets"):
        try:
            __import__(module)
        except ImportError:
            _missing(f"python package {module} is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server process on localhost; :meth:`ready` waits until it answers."""

    def __init__(self, proc: subprocess.Popen, port: int, token: str, root: Path,
                 log: Path) -> None:
        self.proc, self.token, self.root, self.log = proc, token, root, log
        self.base = f"http://127.0.0.1:{port}"

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?token={self.token}"

    def ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}",
                                            timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + self.log.read_text())
                time.sleep(0.2)

    def stop(self) -> None:
        try:  # shuts the kernels down too
            req = urllib.request.Request(f"{self.base}/api/shutdown", method="POST",
                                         headers={"Authorization": f"token {self.token}"})
            urllib.request.urlopen(req, timeout=5).close()
        except OSError as exc:
            print(f"JupyterLab shutdown request failed ({exc}); terminating it")
            self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A JupyterLab server serving ``tmp_path / 'nb'``, its state kept in tmp_path. Started
    here, waited for by the test (:meth:`Lab.ready`), so it boots while the test works."""
    _prerequisites()
    root = tmp_path / "nb"
    root.mkdir()
    port, token = _free_port(), uuid.uuid4().hex
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "jcfg"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "jrun"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "jlab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "jlab-workspaces"),
           "JUPYTER_PLATFORM_DIRS": "1"}
    # no news pop-up over the page; every cell rendered (not windowed), so all are in the DOM
    (tmp_path / "jcfg" / "labconfig").mkdir(parents=True)
    (tmp_path / "jcfg" / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    tracker = tmp_path / "jlab-settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    log_path = tmp_path / "lab.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
             f"--port={port}", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
             "--LabApp.news_url=", "--LabApp.extension_manager=readonly",
             "--ServerApp.terminals_enabled=False",
             "--ServerApp.jpserver_extensions={'jupyter_lsp': False}", "--allow-root"],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Lab(proc, port, token, root, log_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    _prerequisites()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _workspace(folder: Path) -> Catalog:
    from .test_widgets import build_workspace

    return build_workspace(folder, lfw=(LFW / "images").is_dir())


def _notebook(root: Path, workspace: Path) -> Path:
    """A copy of 06_labeling.ipynb with the workspace parameter injected (papermill's way)."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(REPO / "notebooks" / "06_labeling.ipynb"))
    nb = parameterize_notebook(nb, {"workspace": str(workspace), "page_size": 12})
    path = root / "06_labeling.ipynb"
    nbformat.write(nb, path)
    return path


def _wait(driver, css: str, timeout: float = 30, *, visible: bool = True):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    cond = (ec.visibility_of_element_located if visible else ec.presence_of_element_located)
    return WebDriverWait(driver, timeout).until(cond((By.CSS_SELECTOR, css)))


RUN_ALL = """
const done = arguments[arguments.length - 1];
(async () => {
  // headless Chromium has no focused window, so nothing is "current" until activated
  const app = window.jupyterapp;
  const panel = Array.from(app.shell.widgets('main')).find(
    w => w.context && w.context.path === arguments[0]);
  app.shell.activateById(panel.id);
  await panel.context.ready;
  await panel.sessionContext.ready;
  await app.commands.execute('notebook:run-all-cells');
  done('ok');
})().catch(e => done('error: ' + e));
"""


def _label_in_browser(driver, lab: Lab, notebook: str, name: str, n: int, clusters: int
                      ) -> int:
    """Open ``notebook``, run all cells, check it shows its widgets and ``clusters``, drop
    the first face of the largest cluster, label the rest as ``name`` (expecting ``n``
    faces); returns the dropped face id."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    lab.ready()
    driver.get(lab.url(notebook))
    WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "const a = window.jupyterapp; return !!a && Array.from(a.shell.widgets('main'))"
        ".some(w => w.context && w.context.path === arguments[0]);", notebook))
    assert driver.execute_async_script(RUN_ALL, notebook) == "ok"
    # the notebook shows the labeling app, its Clusters tab in front, and its summary line
    for part in ("labeling-app", "run-progress", "cluster-gallery"):
        _wait(driver, f".facelab-{part}", 60)
    for part in ("people-overview", "review", "proposals", "unnamed", "person-page",
                 "photo-view"):                               # the tabs behind it
        _wait(driver, f".facelab-{part}", 60, visible=False)
    assert f"{clusters} clusters to label" in driver.find_element(
        By.CSS_SELECTOR, ".jp-OutputArea-output pre").text

    # drop one face: click the toggle under its tile
    tile = _wait(driver, ".facelab-cluster-gallery .facelab-toggle")
    dropped = int(next(c for c in tile.get_attribute("class").split()
                       if c.startswith("facelab-key-")).removeprefix("facelab-key-"))
    tile.click()
    WebDriverWait(driver, 10).until(lambda d: "mod-danger" in tile.get_attribute("class"))

    name_input = _wait(driver, ".facelab-cluster-gallery .facelab-name input")
    name_input.click()
    name_input.send_keys(name)
    label = _wait(driver, ".facelab-cluster-gallery .facelab-label")
    WebDriverWait(driver, 10).until(lambda d: label.text.strip() ==
                                    f"Label {n} faces as {name}")
    label.click()
    question = _wait(driver, ".facelab-cluster-gallery .facelab-question")
    WebDriverWait(driver, 10).until(lambda d: f"Label {n} faces as {name}" in question.text)
    driver.save_screenshot(str(SCREENSHOTS / "06_labeling-confirm.png"))
    _wait(driver, ".facelab-cluster-gallery .facelab-confirm").click()
    status = _wait(driver, ".facelab-cluster-gallery .facelab-status")
    WebDriverWait(driver, 30).until(lambda d: "Labeled" in status.text)
    assert status.text.startswith(f"Labeled {n} faces as {name}")
    _other_tabs(driver, name, n)
    return dropped


def _tab(driver, title: str) -> None:
    from selenium.webdriver.common.by import By

    next(t for t in driver.find_elements(By.CSS_SELECTOR, ".facelab-tabs .lm-TabBar-tab")
         if t.text.strip() == title).click()


def _other_tabs(driver, name: str, n: int) -> None:
    """The other tabs keep up without re-running a cell: two clusters are merged; the
    people overview shows the new person; a face without a person is named on its photo;
    "Who is this?" proposes names for the faces left, and accepting a page names them; a
    screenshot of each."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    # merge two clusters: pick another cluster in "merge in", then the button
    _tab(driver, "Clusters")

    def merged(d) -> bool:
        # the tab re-reads the catalog when shown: elements found before may be replaced
        try:
            status = d.find_element(By.CSS_SELECTOR, ".facelab-cluster-gallery .facelab-status")
            if status.text.startswith("Merged cluster"):
                return True
            Select(d.find_element(By.CSS_SELECTOR, ".facelab-cluster-gallery "
                                  ".facelab-merge-cluster select")).select_by_index(1)
            d.find_element(By.CSS_SELECTOR,
                           ".facelab-cluster-gallery .facelab-merge-clusters").click()
        except (StaleElementReferenceException, NoSuchElementException):
            pass
        return False

    WebDriverWait(driver, 60, poll_frequency=2).until(merged)
    driver.save_screenshot(str(SCREENSHOTS / "06_labeling-merged.png"))

    _tab(driver, "People")
    person = _wait(driver, ".facelab-people-overview .facelab-toggle")
    WebDriverWait(driver, 30).until(lambda d: person.text.strip() == f"{name} · {n}")
    driver.save_screenshot(str(SCREENSHOTS / "06_labeling-people.png"))
    person.click()                                    # a person's tile opens their page
    _wait(driver, ".facelab-person-page .facelab-toggle", 30)
    driver.save_screenshot(str(SCREENSHOTS / "06_labeling-person.png"))
    # the keys pad: pointer over it, "3" shows the Review tab
    pad = _wait(driver, ".facelab-keypad")
    ActionChains(driver).move_to_element(pad).pause(0.5).send_keys("3").perform()
    WebDriverWait(driver, 30).until(lambda d: d.find_element(
        By.CSS_SELECTOR, ".facelab-tabs .lm-TabBar-tab.lm-mod-current").text.strip()
        == "Review")
    _wait(driver, ".facelab-review", 30)
    driver.save_screenshot(str(SCREENSHOTS / "06_labeling-review.png"))

    # a face without a person: open its photo from its tile, name it there
    _tab(driver, "Without a person")
    _wait(driver, ".facelab-unnamed .facelab-toggle", 30)
    driver.save_screenshot(str(SCREENSHOTS / "06_labeling-without-a-person.png"))
    _wait(driver, ".facelab-unnamed .facelab-photo-link").click()
    name_input = _wait(driver, ".facelab-photo-view .facelab-photo-name input", 30)
    name_input.click()
    name_input.send_keys("Photo Person")
    _wait(driver, ".facelab-photo-view .facelab-photo-name-button").click()
    status = _wait(driver, ".facelab-photo-view .facelab-status")
    WebDriverWait(driver, 30).until(lambda d: "as Photo Person" in status.text)
    driver.save_screenshot(str(SCREENSHOTS / "06_labeling-photo.png"))

    _tab(driver, "Who is this?")
    _wait(driver, ".facelab-proposals .facelab-propose").click()
    _wait(driver, ".facelab-proposals .facelab-toggle", 60)
    driver.save_screenshot(str(SCREENSHOTS / "06_labeling-who-is-this.png"))
    accept = _wait(driver, ".facelab-proposals .facelab-accept")
    WebDriverWait(driver, 10).until(lambda d: accept.is_enabled())
    accept.click()
    status = _wait(driver, ".facelab-proposals .facelab-status")
    WebDriverWait(driver, 60).until(lambda d: status.text.startswith("Named"))


def test_label_a_cluster_in_jupyterlab_with_chromium(lab: Lab, browser, tmp_path: Path
                                                     ) -> None:
    t0 = time.monotonic()
    ws = tmp_path / "ws"
    catalog = _workspace(ws)
    listed = clusters.clusters(catalog)
    largest = listed[0]
    members = {f for (f,) in catalog.query("SELECT face_id FROM faces WHERE cluster_id=? AND "
                                           "person_id IS NULL", [largest["cluster_id"]])}
    nb = _notebook(lab.root, ws)
    n, name = len(members) - 1, "Browser Person"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        dropped = _label_in_browser(browser, lab, nb.name, name, n, len(listed))
    except Exception:
        failed = SCREENSHOTS / "06_labeling-failed.png"
        browser.save_screenshot(str(failed))
        print(f"screenshot of the failure: {failed}\nJupyterLab log:\n"
              + lab.log.read_text()[-4000:])
        raise
    shot = SCREENSHOTS / "06_labeling.png"
    browser.save_screenshot(str(shot))
    print(f"screenshots: {SCREENSHOTS / '06_labeling-confirm.png'} (the question), {shot}")

    pid = naming.find_person(catalog, name)
    assert pid is not None
    labeled = {f for (f,) in catalog.query("SELECT face_id FROM faces WHERE person_id=? AND "
                                           "assigned_by='cluster_label'", [pid])}
    assert len(labeled) == n and labeled == members - {dropped}
    # the dropped face is never the person it was dropped from (it may be named otherwise)
    assert catalog.scalar("SELECT person_id FROM faces WHERE face_id=?", [dropped]) != pid
    # the "who is this?" page accepted in the browser named more of them
    assert catalog.scalar("SELECT count(*) FROM suggestions WHERE source='proposal' AND "
                          "status='accepted'") > 0
    # a face was named on its photo, and two clusters were merged
    photo = naming.find_person(catalog, "Photo Person")
    assert photo is not None and catalog.scalar(
        "SELECT count(*) FROM faces WHERE person_id=?", [photo]) == 1
    assert catalog.scalar("SELECT count(*) FROM events WHERE action='merge_clusters'") >= 1
    print(json.dumps({"seconds": round(time.monotonic() - t0, 1), "labeled": n}))
