"""Training one run: model families, corpora and tokens, the machine, the loop, the coordinate check.

Layer: base, config, evals. The only layer besides evals that imports torch.
"""
