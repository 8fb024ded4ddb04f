"""Capability tasks: task files, the built-in tasks drawn from held-out text, and scoring a model.

Layer: base, config. Scoring imports torch; building tasks does not.
"""
