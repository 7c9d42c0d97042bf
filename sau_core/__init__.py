"""SAU Lab engine: plant backdoors in image classifiers and remove them with Shared Adversarial
Unlearning (Wei et al., NeurIPS 2023, arXiv 2307.10562).

Images are float tensors in [0, 1] of shape (N, C, H, W); normalisation is the first layer of
every model, so triggers, PGD and saliency all work in pixel space.
"""

__version__ = "0.1.0"
