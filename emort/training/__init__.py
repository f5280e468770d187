"""Training (torch + librosa, behind the ``[train]`` extra).

Importing this package is cheap: heavy modules import torch themselves.
"""
