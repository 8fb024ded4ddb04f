"""Sweeps: the plan of a sweep file, the run queue (Optuna), workers, and tracking (MLflow).

Layer: base, config, training, evals. The only layer that imports Optuna or MLflow.
"""
