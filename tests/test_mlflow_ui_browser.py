"""A sweep in the MLflow UI, in Debian's headless Chromium against a real ``mlflow server``.

Runs are logged exactly as training logs them (``RunLogger``), with a report run beside them.
The sweep's view (``tracking.sweep_view_url``) must open on the runs table in MLflow's
"Model training" workflow, list the training runs and not the report run, and show final
loss, N, D and C. A screenshot is written (``mlflow-ui.png`` in the test's temporary
directory; ``SCALING_SCREENSHOT_DIR`` keeps a copy) and checked: the table region it shows
is drawn, not blank.

Opened from MLflow's own experiment list instead, MLflow 3.17.2 chooses the page from the
browser's workflow switch ("GenAI" / "Model training" in the sidebar, remembered in the
browser's localStorage as ``mlflow.workflowType_v1``, GenAI until changed), not from the
experiment's ``mlflow.experimentKind`` tag (docs/architecture.md, "MLflow keys"): a fresh
browser lands on the GenAI overview, and once "Model training" was chosen, the experiment list
and the plain ``#/experiments/ID`` link open the runs table.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import pytest

from scaling.config.run import RunSpec
from scaling.sweeps import tracking

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
COLUMNS = ["final/eval_loss", "size/params", "size/tokens", "size/flops"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
    ),
]


def _log_sweep(uri: str, tmp_path: Path, sweep: str = "ui-sweep") -> list[str]:
    tracking.setup_experiment(sweep, tracking_uri=uri)
    names = []
    for i, width in enumerate((32, 48, 64)):
        spec = RunSpec(sweep=sweep, name=f"d{width}-L2", model={"n_layer": 2, "d_model": width, "context": 64})
        params = 1000.0 * (i + 1)
        with tracking.RunLogger(spec, tracking_uri=uri) as run:
            for step in range(1, 11):
                run.log(step, {"train/loss": 3.0 - step / 100, "train/tokens": 512.0 * step})
            run.finish({
                "final/eval_loss": 2.5 - i / 10, "size/params": params, "size/tokens": 20 * params,
                "size/flops": 6 * params * 20 * params,
            })  # fmt: skip
        names.append(spec.name)
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("# forecast\n")
    tracking.log_report(sweep, report, tracking_uri=uri, name="report-run")
    return names


def _drawn(png: bytes) -> int:
    """Distinct colours in a screenshot (a blank or failed page has one or two)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return len(image.getcolors(maxcolors=1 << 20) or [])


def test_the_sweep_opens_on_its_training_runs_with_loss_n_d_c(mlflow_server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    names = _log_sweep(mlflow_server, tmp_path)
    url = tracking.sweep_view_url("ui-sweep", tracking_uri=mlflow_server)
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url, wait_until="load")
            for name in names:  # the runs table fills in once the runs are fetched
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            headers = [page.get_by_text(column, exact=True).first for column in COLUMNS]
            visible = [header.is_visible() for header in headers]
            body = page.inner_text("body")
            final_url = page.url
            shot = tmp_path / "mlflow-ui.png"
            page.screenshot(path=str(shot))
            table = page.get_by_text(names[0], exact=True).first.bounding_box()
            region = page.screenshot(clip={"x": 0, "y": table["y"] - 60, "width": 1600, "height": 200})
        finally:
            browser.close()

    assert "/runs?" in final_url and "workflowType=machine_learning" in final_url
    assert visible == [True] * len(COLUMNS), dict(zip(COLUMNS, visible))
    assert "report-run" not in body  # the report run is filtered out of the training runs
    assert "3 matching runs" in body
    assert "2.3" in body and str(6 * 3000 * 20 * 3000) in body.replace(",", "")  # loss, C of the largest
    assert errors == []
    assert shot.stat().st_size > 20_000 and _drawn(region) > 20
    keep = os.environ.get("SCALING_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "mlflow-ui.png")


def _open_from_the_experiment_list(page, server: str, sweep: str, workflow: str | None = None) -> None:
    """As a user does: MLflow's start page, "Experiments" in the sidebar, (the sidebar's
    workflow switch set to ``workflow``,) then the sweep in the list."""
    page.goto(server + "/", wait_until="load")
    page.get_by_role("link", name="Experiments", exact=True).first.click()
    if workflow is not None:
        page.get_by_text(workflow, exact=True).first.click()
    page.locator('[data-testid="experiment-list-item-link"]', has_text=sweep).first.click()
    page.wait_for_url(re.compile(r"workflowType="), timeout=60_000)  # MLflow's redirect to a tab


def _experiment_kind(server: str, sweep: str) -> str | None:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server).get_experiment_by_name(sweep).tags.get(tracking.TAG_EXPERIMENT_KIND)


def test_a_fresh_browser_opens_a_sweep_from_the_experiment_list_on_genai_whatever_its_kind(
    mlflow_server, tmp_path
):
    """MLflow 3.17.2's measured behaviour, which the docs state: the experiment's kind tag is
    set, and still a browser that never chose a workflow lands on the GenAI overview. If a
    later MLflow honours the tag, this fails: then the docs' note changes."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    names = _log_sweep(mlflow_server, tmp_path, sweep="ui-list-fresh")
    assert _experiment_kind(mlflow_server, "ui-list-fresh") == tracking.EXPERIMENT_KIND
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            _open_from_the_experiment_list(page, mlflow_server, "ui-list-fresh")
            page.get_by_text("Traces", exact=True).first.wait_for(timeout=60_000)
            final_url, body = page.url, page.inner_text("body")
            stored = page.evaluate("window.localStorage.getItem('mlflow.workflowType_v1')")
        finally:
            browser.close()
    assert "workflowType=genai" in final_url and "/runs" not in final_url, final_url
    assert not any(name in body for name in names)
    assert stored is None  # nothing chosen yet: MLflow's default, GenAI


def test_once_model_training_is_chosen_the_experiment_list_opens_the_runs_table(mlflow_server, tmp_path):
    """The documented way: choose "Model training" in the sidebar once; from then on this
    browser opens a sweep from the experiment list, or by its plain link, on its runs."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    names = _log_sweep(mlflow_server, tmp_path, sweep="ui-list-chosen")
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 900})
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            _open_from_the_experiment_list(page, mlflow_server, "ui-list-chosen", workflow="Model training")
            for name in names:
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            from_list_url, from_list = page.url, page.inner_text("body")
            stored = page.evaluate("window.localStorage.getItem('mlflow.workflowType_v1')")
            plain = context.new_page()  # a new tab of the same browser, the bare experiment link
            experiment_url = page.url.split("/runs")[0]
            plain.goto(experiment_url, wait_until="load")
            plain.wait_for_url(re.compile(r"/runs\?"), timeout=60_000)
            for name in names:
                plain.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            plain_url = plain.url
        finally:
            browser.close()
    assert re.search(r"#/experiments/\d+/runs\?", from_list_url), from_list_url
    assert "workflowType=machine_learning" in from_list_url
    assert "4 matching runs" in from_list  # MLflow's own runs table: the report run is listed too
    assert stored == '"machine_learning"'
    assert re.search(r"#/experiments/\d+/runs\?", plain_url) and "workflowType=machine_learning" in plain_url
    assert errors == []
