"""Sentence embeddings from a transformers encoder (all-MiniLM-L6-v2 by default): the shared ground
of the sentiment head and of trigger similarity.

Mean pooling over the tokens, then unit length, as sentence-transformers does for this model, so
a dot product is a cosine similarity. Calls are blocking: the pipeline runs them in the text
model's own executor, never on the event loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from coach.errors import ModelError

if TYPE_CHECKING:
    from coach.models import TextModel

MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on up to 256 word pieces


def load_transformers(model: TextModel, loader, what: str):
    """``loader.from_pretrained`` with one-line errors; local folders never touch the network."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model.path, local_files_only=model.source != "hub")
        network = loader.from_pretrained(model.path, local_files_only=model.source != "hub")
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = "no model hub reachable? give a local model folder" if model.source == "hub" else "is it a transformers model folder?"
        raise ModelError(f"cannot load {what} {model.path} ({reason[:160]}): {hint}") from None
    return tokenizer, network.eval()


class TextEncoder:
    def __init__(self, model: TextModel, threads: int = 1) -> None:
        import torch
        import transformers

        torch.set_num_threads(threads)
        self.name = model.path
        self._torch = torch
        self._tokenizer, self.model = load_transformers(model, transformers.AutoModel, "text encoder")
        self.dimensions = int(self.model.config.hidden_size)

    def pool(self, model, texts: list[str]):
        """Unit-length mean-pooled embeddings of ``texts`` by ``model`` (this encoder's or a copy being
        tuned), as a torch tensor: the one place sentences become vectors, in training and at run time."""
        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self._torch.nn.functional.normalize(pooled, dim=1)

    def embed(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), dimensions)`` float32, each row of unit length."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        with self._torch.inference_mode():
            return self.pool(self.model, texts).numpy().astype(np.float32)

    def adapted(self, adapter: Path) -> TextEncoder:
        """A second encoder: this one with the trigger adapter added into a copy of its weights."""
        import copy

        from coach.detect import adapter as lowrank

        tuned = copy.copy(self)
        tuned.model = copy.deepcopy(self.model).eval()
        lowrank.merge(tuned.model, adapter)
        tuned.name = f"{self.name}+{Path(adapter).name}:{lowrank.fingerprint(adapter)[:12]}"
        return tuned
