"""The report footer names what trained the runs it was built from: commit, versions, device,
host and corpus hash (the provenance tags of scaling.sweeps.tracking, as run-table columns)."""

from __future__ import annotations

import numpy as np
from helpers import synthetic_runs

from scaling.reporting.render import render_html, render_markdown
from scaling.reporting.report import ReportInputs, build_report

COMMIT = "0123456789abcdef0123456789abcdef01234567"
PROVENANCE = {
    "git_commit": COMMIT, "git_dirty": "false", "version_scaling": "0.1.0",
    "version_torch": "2.14.1", "version_cuda": "13.0", "version_mlflow": "3.17.2",
    "version_optuna": "5.0.0", "device": "NVIDIA H200", "device_count": "8", "host": "node1",
    "corpus_hash": "c0ffee",
}  # fmt: skip


def _report(runs):
    inputs = ReportInputs(runs, "synthetic", "MLflow experiment synthetic", sweep="synthetic")
    return build_report(inputs, n_bootstrap=20, date="2026-01-01")


def _tracked_runs():
    runs = synthetic_runs()
    for column, value in PROVENANCE.items():
        runs[column] = value
    failed = runs["status"] != "FINISHED"  # left out of the fit, so out of the footer too
    runs.loc[failed, "git_commit"] = "f" * 40
    runs.loc[failed, "git_dirty"] = "true"
    return runs


def test_the_footer_shows_the_provenance_of_the_runs_fitted():
    markdown = render_markdown(_report(_tracked_runs()))
    footer = markdown.split("\n---\n", 1)[1]
    line = (
        "Runs trained with: commit 0123456789ab · scaling 0.1.0, torch 2.14.1, CUDA 13.0, "
        "mlflow 3.17.2, optuna 5.0.0 · device NVIDIA H200 (count 8) · host node1 · "
        "corpus hash c0ffee."
    )
    assert line in footer
    assert "ffffffffffff" not in footer and "uncommitted" not in footer


def test_runs_from_two_commits_and_a_dirty_tree_are_all_named():
    runs = _tracked_runs()
    second = runs.index[(runs["status"] == "FINISHED") & np.isfinite(runs["loss"])][0]
    runs.loc[second, "git_commit"] = "a" * 40
    runs.loc[second, "git_dirty"] = "true"
    runs.loc[second, "device"] = "cpu: AMD EPYC"
    footer = render_markdown(_report(runs)).split("\n---\n", 1)[1]
    assert "commit aaaaaaaaaaaa / 0123456789ab (uncommitted changes)" in footer
    assert "device cpu: AMD EPYC / NVIDIA H200" in footer


def test_the_html_footer_has_the_same_two_lines():
    from scaling.reporting.figures import draw_all

    report = _report(_tracked_runs())
    page = render_html(report, draw_all(report.figures))
    footer = page.split("<footer>", 1)[1].split("</footer>", 1)[0]
    assert footer.count("<p>") == 2
    assert "Runs trained with: commit 0123456789ab" in footer


def test_runs_without_provenance_keep_a_one_line_footer():
    markdown = render_markdown(_report(synthetic_runs()))
    footer = markdown.split("\n---\n", 1)[1]
    assert "Runs trained with" not in footer
    assert footer.strip().count("\n") == 0


def test_a_report_from_a_real_sqlite_experiment_names_what_trained_its_runs():
    """Runs logged by RunLogger (as training logs them) carry their provenance into the footer."""
    from importlib import metadata

    from scaling.config.run import RunSpec
    from scaling.sweeps import tracking

    uri = "sqlite:///mlflow.db"
    tracking.setup_experiment("footer", tracking_uri=uri)
    ladder = synthetic_runs(isoflop=False, extras=False, target=False, n_ladder=6)
    for i, row in enumerate(ladder.itertuples()):
        spec = RunSpec(sweep="footer", name=row.name, model={"n_layer": 1, "d_model": 8}, train={"seed": i})
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"content_hash": "feedbeef"})})
        with tracking.RunLogger(spec, tracking_uri=uri) as run:
            run.finish({"final/eval_loss": row.loss, "size/params": row.params, "size/tokens": row.tokens,
                        "size/flops": row.flops, "size/flops_exact": row.flops_exact})  # fmt: skip
    from scaling.reporting.report import inputs_from_experiment

    report = build_report(inputs_from_experiment("footer", tracking_uri=uri), n_bootstrap=20, date="2026-01-01")
    footer = render_markdown(report).split("\n---\n", 1)[1]
    assert f"torch {metadata.version('torch')}" in footer
    assert f"mlflow {metadata.version('mlflow')}, optuna {metadata.version('optuna')}" in footer
    assert "corpus hash feedbeef" in footer and "device " in footer
    assert "commit" not in footer  # the test's working directory is not a git repository
