"""The HTML report in a real browser: Debian's headless Chromium, offline.

Every image must load (naturalWidth > 0) with no console error and no network request; a
full-page screenshot is written for a person to look at (``report.png`` beside the report in
the test's temporary directory; set ``SCALING_SCREENSHOT_DIR`` to keep a copy elsewhere).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import synthetic_curves, synthetic_runs

from scaling.reporting.render import write_report
from scaling.reporting.report import ReportInputs, build_report

CHROMIUM = Path("/usr/bin/chromium")
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

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
    ),
]


def test_html_report_opens_offline_with_every_image_loaded(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    runs = synthetic_runs()
    curves = synthetic_curves(runs)
    inputs = ReportInputs(runs, "synthetic", "MLflow experiment synthetic", curves=curves)
    out = write_report(build_report(inputs, n_bootstrap=50, date="2026-01-01"), tmp_path / "report")

    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto((out / "index.html").as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
            )
            title = page.title()
            headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
            page.screenshot(path=str(out / "report.png"), full_page=True)
        finally:
            browser.close()

    assert title == "Scaling report: synthetic"
    assert [alt for alt, *_ in images] == [
        "Loss against compute", "Learning curves", "IsoFLOP curves", "Residuals of the fit"
    ]
    for alt, complete, width, height in images:
        assert complete and width > 0 and height > 0, alt
    assert len(headings) == 9 and any(h.endswith("The large run") for h in headings)  # none registered
    assert errors == []
    # The page itself is the only request: images are data URIs, nothing else is fetched.
    assert [url for url in requests if not url.startswith("data:")] == [(out / "index.html").as_uri()]
    assert (out / "report.png").stat().st_size > 10_000
    keep = os.environ.get("SCALING_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "report.png", Path(keep) / "report.png")
