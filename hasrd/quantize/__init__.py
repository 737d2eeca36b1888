"""Quantizers: residual VQ over vector-quantize-pytorch, with a semantic first stage."""
from .rvq import (
    HierarchicalQuantizer,
    QuantizerOutput,
    ResidualQuantizer,
    codebook_metrics,
    sample_n_q,
)

__all__ = ["HierarchicalQuantizer", "QuantizerOutput", "ResidualQuantizer", "codebook_metrics", "sample_n_q"]
