"""Scaling laws on a run table: forms, the batched optimizer, fits, backtests, run selection,
compute-optimal allocation, hyperparameter laws, capability forecasts and saved fits.

Layer: base only, with numpy, scipy and pandas: no torch, MLflow, Optuna or matplotlib, and no
files or MLflow runs read except a saved fit.
"""
