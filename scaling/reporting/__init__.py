"""What a person reads: the comparison with the large run, the report model, figures, rendering.

Layer: base, config, laws, sweeps (for reading runs from MLflow). The only layer that imports
matplotlib (inside the drawing functions).
"""
