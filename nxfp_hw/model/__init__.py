"""Model-level accuracy under the exact numerics of the generated hardware (docs/model_accuracy.md).

``hw_matmul``: the dot engine's semantics as a fast matrix product; ``minilm``: all-MiniLM-L6-v2 as a
NumPy forward pass whose linear layers run on it; ``evaluate``: sentence-embedding figures per
(weight format, activation format, accumulation mode) point.
"""
