"""Compression: magnitude pruning (pruning), the QAT schemes (quantization) and TF.js's 8-bit
weight grid (tfjs_grid)."""
