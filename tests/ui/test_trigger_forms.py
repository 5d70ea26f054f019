"""The Airflow 3 trigger form of every DAG, in a real browser (headless Debian chromium) against ``airflow standalone``.

Per DAG: log in on the UI's login page, open the DAG's Trigger form and check that, with every
default untouched, no field is flagged invalid and Trigger is enabled; save a screenshot of the
form to ``docs/ui/<dag_id>-form.png``; fill only the inputs and the sink, press Trigger (with
"Unpause ... on trigger" checked, as it comes). Then every run must succeed, and one task's
log page must show the library's progress and summary lines.

All forms are submitted first (one test each) and the runs then awaited (one test each), so the
five runs share the machine instead of queuing behind each other.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "ui"
DAG_IDS = ("imagenet_aux", "resnet50_model", "imagenet_training_data", "imagenet_preprocessed", "imagenet_accuracy")
RUN_TIMEOUT = 420  # s; generous: the runs share two cores
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,2400",
)
# One task's log page per DAG: (task, map index, lines it must show). Progress lines end at 100%;
# the summary is the operator's or the library's last line for the step.
LOG_CHECKS = {
    "imagenet_aux": (
        "download",
        -1,
        [
            r"download caffe_ilsvrc12\.tar\.gz: .* \(100\.0%\)",
            r"Downloaded \S+caffe_ilsvrc12\.tar\.gz: \d+ bytes from http://127",
        ],
    ),
    "resnet50_model": (
        "download",
        0,
        [r"download resnet50_v1\.onnx: .* \(100\.0%\)", r"Downloaded \S+: resnet50_v1\.onnx \(\d+ bytes, md5 [0-9a-f]{32}"],
    ),
    "imagenet_training_data": (
        "write_shards",
        0,
        [r"wrote \d+ units \(\d+ images, .* images/s\)", r"Group done: \d+ units written \(\d+ records\)"],
    ),
    "imagenet_preprocessed": (
        "preprocess",
        0,
        [r"preprocessed \d+ images \(.*\) in .* with \d+ worker\(s\): .* images/s, 0 bad"],
    ),
    "imagenet_accuracy": (
        "score",
        0,
        [
            r"score chunk 0: \d+ images on onnxruntime, batch 32",
            r"score chunk 0: scored \d+ images in .* images/s\), top-1 so far",
        ],
    ),
}
SUBMITTED: dict[str, str] = {}  # dag_id -> run_id of the run the form created


@pytest.fixture(scope="module")
def driver(browser_binaries, tmp_path_factory) -> Iterator:
    """Headless chromium through Debian's chromedriver (given explicitly: Selenium Manager never runs)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_binaries
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp(), prefix='chromium-')}")
    browser = webdriver.Chrome(service=Service(executable_path=str(chromedriver)), options=options)
    browser.set_page_load_timeout(60)
    yield browser
    browser.quit()


@contextlib.contextmanager
def screenshot_on_failure(driver, tmp_path: Path, name: str) -> Iterator[None]:
    """On any failure, save what the browser shows and name the file in the failure."""
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, pytest.skip.Exception):
            raise
        shot = tmp_path / f"{name}-failure.png"
        try:
            driver.save_screenshot(str(shot))
            where = f"screenshot: {shot} (page {driver.current_url})"
        except Exception as shot_exc:  # noqa: BLE001 - the original failure matters more
            where = f"no screenshot ({shot_exc})"
        raise AssertionError(f"{exc}\n{where}") from exc


def _wait(driver, condition, timeout: float = 30, message: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition, message)


def log_in(driver, cluster) -> None:
    """Through the UI's login page, as a user would."""
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{cluster.base}/auth/login")
    _wait(driver, lambda d: d.find_elements(By.NAME, "username"), message="the login form")[0].send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys(cluster.password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    try:
        _wait(driver, lambda d: "/auth/login" not in d.current_url, message="redirect after login")
    except Exception as exc:  # noqa: BLE001 - say what the page and the api-server said
        page = driver.execute_script("return document.body.innerText")
        raise AssertionError(f"login failed; page says: {page[:500]!r}\n{cluster.component_logs()}") from exc


def open_trigger_form(driver, cluster, dag_id: str):
    """The DAG page's Trigger dialog, once its param fields are rendered."""
    from selenium.webdriver.common.by import By

    driver.get(f"{cluster.base}/dags/{dag_id}")
    button = _wait(
        driver,
        lambda d: [b for b in d.find_elements(By.CSS_SELECTOR, "[data-testid=trigger-dag-button]") if b.is_enabled()],
        message="the DAG's Trigger button",
    )[0]
    button.click()
    dialog = _wait(
        driver,
        lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, "[data-scope=dialog][data-part=content]") if e.is_displayed()],
        message="the trigger dialog",
    )[0]
    _wait(driver, lambda d: dialog.find_elements(By.CSS_SELECTOR, "[id^=element_]"), message="the form's fields")
    return dialog


def invalid_fields(driver, dialog) -> list[str]:
    """Fields the form flags (hidden sections included: textContent, not the visible text)."""
    from selenium.webdriver.common.by import By

    flagged = [
        e.get_attribute("id") or e.get_attribute("outerHTML")[:120]
        for e in dialog.find_elements(By.CSS_SELECTOR, "[data-invalid], [aria-invalid=true]")
    ]
    text = driver.execute_script("return arguments[0].textContent", dialog)
    if "This field is required" in text:
        flagged.append("'This field is required' shown")
    return flagged


def trigger_button(dialog):
    from selenium.webdriver.common.by import By

    buttons = [b for b in dialog.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Trigger"]
    assert len(buttons) == 1, [b.text for b in dialog.find_elements(By.TAG_NAME, "button")]
    return buttons[0]


def save_form_screenshot(driver, dialog, path: Path) -> None:
    """Every param section open at once (the accordion opens one at a time) and the dialog unclipped.

    This rearranges the page for the picture: reopen the form afterwards before using it.
    """
    driver.execute_script(
        """
        const dialog = arguments[0];
        const show = (e) => {
          e.style.setProperty('max-height', 'none', 'important');
          e.style.setProperty('overflow', 'visible', 'important');
        };
        for (const c of dialog.querySelectorAll('[data-scope=accordion][data-part=item-content]')) {
          if (c.id.endsWith(':advancedOptions')) continue;
          c.removeAttribute('hidden');
          c.dataset.state = 'open';
          c.style.setProperty('height', 'auto', 'important');
          c.style.setProperty('animation', 'none', 'important');
          show(c);
        }
        for (let e = dialog; e && e !== document.body; e = e.parentElement) show(e);
        for (const e of dialog.querySelectorAll('*')) {
          if (['auto', 'scroll'].includes(getComputedStyle(e).overflowY)) show(e);
        }""",
        dialog,
    )
    size = driver.get_window_size()
    try:
        height = driver.execute_script("return arguments[0].getBoundingClientRect().height", dialog)
        driver.set_window_size(size["width"], max(size["height"], int(height) + 300))
        path.parent.mkdir(parents=True, exist_ok=True)
        dialog.screenshot(str(path))
    finally:
        driver.set_window_size(size["width"], size["height"])
    assert path.stat().st_size > 10_000, f"{path}: suspiciously small screenshot"


def fill(driver, dialog, name: str, value: str) -> None:
    """Type ``value`` into field ``name`` (opening its section first, as a user would)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = dialog.find_element(By.ID, f"element_{name}")
    if not field.is_displayed():
        section = driver.execute_script(
            "return arguments[0].closest('[data-scope=accordion][data-part=item-content]').getAttribute('aria-labelledby')",
            field,
        )
        opener = dialog.find_element(By.ID, section)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", opener)
        opener.click()
        _wait(driver, lambda d: field.is_displayed(), 10, f"the section of {name}")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", field)
    # The form re-renders on every keystroke and can drop one typed fast: retype slowly, then give up.
    for pause in (0.0, 0.02, 0.05):
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(Keys.DELETE)
        if pause == 0.0:
            field.send_keys(value)
        else:
            for char in value:
                field.send_keys(char)
                time.sleep(pause)
        if field.get_attribute("value") == value:
            return
    raise AssertionError(f"field {name}: typed {value!r}, the form holds {field.get_attribute('value')!r}")


def unpause_checkbox(dialog, dag_id: str):
    """The "Unpause <DAG> on trigger" checkbox: (its input, its label text)."""
    from selenium.webdriver.common.by import By

    for label in dialog.find_elements(By.CSS_SELECTOR, "label"):
        if re.fullmatch(r"Unpause .+ on trigger", label.text.strip()):
            return label.find_element(By.CSS_SELECTOR, "input[type=checkbox]"), label.text.strip()
    raise AssertionError(f"{dag_id}: no 'Unpause ... on trigger' checkbox in the form")


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_form_submits_with_defaults_and_only_inputs(driver, cluster, dag_inputs, tmp_path, dag_id):
    cluster.set_paused(dag_id, True)  # as after a fresh deploy, whatever ran before
    with screenshot_on_failure(driver, tmp_path, dag_id):
        log_in(driver, cluster)
        dialog = open_trigger_form(driver, cluster, dag_id)
        assert invalid_fields(driver, dialog) == [], f"{dag_id}: fields flagged with every default untouched"
        assert trigger_button(dialog).is_enabled(), f"{dag_id}: Trigger disabled with every default untouched"
        save_form_screenshot(driver, dialog, DOCS / f"{dag_id}-form.png")
        dialog = open_trigger_form(driver, cluster, dag_id)

        sink = cluster.sink("ui", dag_id)
        for name, value in {**dag_inputs.inputs[dag_id], "sink_uri": sink}.items():
            fill(driver, dialog, name, value)
        assert invalid_fields(driver, dialog) == [], f"{dag_id}: fields flagged after filling the inputs"
        checkbox, label = unpause_checkbox(dialog, dag_id)
        assert checkbox.is_selected(), f"{dag_id}: '{label}' is not checked by default"

        before = {r["dag_run_id"] for r in cluster.runs(dag_id)}
        button = trigger_button(dialog)
        assert button.is_enabled(), f"{dag_id}: Trigger disabled after filling the inputs"
        button.click()
        new = cluster.wait(
            lambda: [r for r in cluster.runs(dag_id) if r["dag_run_id"] not in before], 30, f"{dag_id}: the triggered run"
        )
        assert [r["run_type"] for r in new] == ["manual"], new
        run = new[0]
        assert run["conf"]["sink_uri"] == sink, run["conf"]
        SUBMITTED[dag_id] = run["dag_run_id"]
        assert cluster.get(f"dags/{dag_id}")["is_paused"] is False, f"{dag_id}: '{label}' did not unpause the DAG"


def test_unpause_on_trigger_runs_the_manual_run_and_schedules_nothing(cluster):
    """The form's "Unpause imagenet_aux on trigger": its manual run starts at once, and no catch-up run appears."""
    dag_id = "imagenet_aux"
    if dag_id not in SUBMITTED:
        pytest.fail(f"{dag_id}: its form was not submitted (see the form test)")
    run_id = SUBMITTED[dag_id]
    cluster.wait(
        lambda: cluster.run(dag_id, run_id)["state"] in ("running", "success"), 20, f"{dag_id}: the manual run to be running"
    )
    runs = cluster.runs(dag_id)
    assert [r["run_type"] for r in runs if r["run_type"] == "scheduled"] == [], [(r["dag_run_id"], r["run_type"]) for r in runs]


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_triggered_run_succeeds_and_its_log_page_shows_progress(driver, cluster, tmp_path, dag_id):
    if dag_id not in SUBMITTED:
        pytest.fail(f"{dag_id}: its form was not submitted (see the form test)")
    run_id = SUBMITTED[dag_id]
    cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)

    task_id, map_index, patterns = LOG_CHECKS[dag_id]
    page = f"{cluster.base}/dags/{dag_id}/runs/{quote(run_id)}/tasks/{task_id}"
    if map_index >= 0:
        page += f"/mapped/{map_index}"
    with screenshot_on_failure(driver, tmp_path, f"{dag_id}-log"):
        log_in(driver, cluster)
        driver.get(page)

        def lines_shown():
            text = driver.execute_script("return document.body.innerText")
            return all(re.search(p, text) for p in patterns) and text

        try:
            _wait(driver, lambda d: lines_shown(), 30)
        except Exception as exc:  # noqa: BLE001 - report what the page and the API show instead
            text = driver.execute_script("return document.body.innerText")
            missing = [p for p in patterns if not re.search(p, text)]
            api_log = cluster.task_log(dag_id, run_id, task_id, map_index=map_index)
            raise AssertionError(
                f"{dag_id}: log page {page} lacks {missing}\n--- page text (tail) ---\n{text[-3000:]}\n"
                f"--- the same log over REST (tail) ---\n{api_log[-3000:]}"
            ) from exc
