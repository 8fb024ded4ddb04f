"""The public surface: every exported name resolves, and importing is light."""

from __future__ import annotations

import subprocess
import sys

import scaling


def test_every_exported_name_resolves():
    missing = [name for name in scaling.__all__ if getattr(scaling, name, None) is None]
    assert missing == []


def test_import_and_fit_entry_points_load_no_heavy_stack():
    code = (
        "import sys, scaling; scaling.fit; scaling.get_law; scaling.load_csv; "
        "print(sorted(m for m in ('torch', 'mlflow', 'matplotlib', 'optuna') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
