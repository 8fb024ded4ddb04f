"""Configuration: what one run is, what a sweep is, and how YAML becomes them.

Layer: base only (pydantic, PyYAML). No torch, MLflow, Optuna or matplotlib.
"""
