"""Record all-MiniLM-L6-v2 sentence embeddings from sentence-transformers (the trusted reference
implementation: PyTorch BERT, mean pooling, normalisation) for tests/test_model_minilm.py.

Needs the optional extra: pip install 'nxfp-hw[reference]' (sentence-transformers, torch).
Usage: .venv/bin/python scripts/make_minilm_reference.py [--limit N] [--out tests/data/minilm_reference.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--out", type=Path, default=Path("tests/data/minilm_reference.json"))
    args = ap.parse_args()
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    from nxfp_hw.model.eval import load_sentences
    from nxfp_hw.model.minilm import default_model_dir

    sentences = load_sentences(limit=args.limit)
    model = SentenceTransformer(str(default_model_dir()), device="cpu")
    emb = model.encode(sentences, convert_to_numpy=True, batch_size=len(sentences)).astype(np.float32)
    data = {"generator": "scripts/make_minilm_reference.py",
            "sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__,
            "sentences": sentences, "embeddings": [[float(f"{v:.9g}") for v in row] for row in emb]}
    args.out.write_text(json.dumps(data) + "\n")
    print(f"wrote {args.out}: {len(sentences)} embeddings")


if __name__ == "__main__":
    main()
