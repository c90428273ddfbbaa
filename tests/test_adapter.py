"""The trigger adapter: what training computes is what the merged encoder computes at run time."""

import copy

import numpy as np
import pytest
import torch
import transformers

from coach.detect import adapter as lowrank
from coach.errors import ModelError


def tiny_encoder(hidden: int = 32) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=2 * hidden, max_position_embeddings=16)
    return transformers.BertModel(config).eval()


def test_the_merged_adapter_reads_as_the_trained_one(tmp_path):
    base = tiny_encoder()
    training = copy.deepcopy(base)
    updates = lowrank.attach(training)
    assert updates and all(not p.requires_grad for n, p in training.named_parameters() if not n.endswith((".a", ".b")))
    with torch.no_grad():
        for update in updates.values():
            update.b.normal_(0, 0.2)  # as if trained
    tokens = torch.tensor([[1, 5, 9, 2, 7]])
    trained = training(input_ids=tokens).last_hidden_state
    lowrank.save(updates, tmp_path / "adapter.npz")
    merged = copy.deepcopy(base)
    lowrank.merge(merged, tmp_path / "adapter.npz")
    assert torch.allclose(merged(input_ids=tokens).last_hidden_state, trained, atol=1e-5)
    assert not torch.allclose(base(input_ids=tokens).last_hidden_state, trained, atol=1e-3)  # it changed the encoder


def test_an_adapter_for_another_encoder_is_refused_in_one_line(tmp_path):
    updates = lowrank.attach(tiny_encoder(hidden=32))
    lowrank.save(updates, tmp_path / "adapter.npz")
    with pytest.raises(ModelError, match="make train"):
        lowrank.merge(tiny_encoder(hidden=16), tmp_path / "adapter.npz")
    (tmp_path / "broken.npz").write_bytes(b"not an archive")
    with pytest.raises(ModelError, match="unreadable"):
        lowrank.merge(tiny_encoder(), tmp_path / "broken.npz")
    with pytest.raises(ModelError, match="not found"):
        lowrank.merge(tiny_encoder(), tmp_path / "missing.npz")


def test_the_saved_adapter_depends_on_the_numbers_alone(tmp_path):
    updates = lowrank.attach(tiny_encoder())
    lowrank.save(updates, tmp_path / "a.npz")
    lowrank.save(updates, tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert set(np.load(tmp_path / "a.npz").files) == {f"{name}.{part}" for name in updates for part in "ab"}


class WordTokenizer:
    """Words to ids of a tiny vocabulary (0 pads), as a transformers tokenizer returns them."""

    def __call__(self, texts, padding=True, truncation=True, max_length=16, return_tensors="pt"):
        ids = [[1] + [3 + sum(map(ord, w)) % 40 for w in t.split()][: max_length - 2] + [2] for t in texts]
        width = max(map(len, ids))
        return {"input_ids": torch.tensor([i + [0] * (width - len(i)) for i in ids]),
                "attention_mask": torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])}


class TinyEncoder:
    def __init__(self) -> None:
        self.model = tiny_encoder()
        self._tokenizer = WordTokenizer()
        self.dimensions = 32
        self.name = "tiny"

    def embed(self, texts):
        from coach.detect.encoder import TextEncoder

        with torch.inference_mode():
            return TextEncoder.pool(self, self.model, texts).numpy()

    _torch = torch


def test_the_candidates_training_reads_the_top_blocks_as_the_whole_encoder_does():
    """benchmarks/turn_model_training.py keeps the frozen layers' output and runs only the tuned top
    blocks: that must be what the whole encoder, adapter and all, computes."""
    from benchmarks.turn_model_training import LayerCache

    encoder = TinyEncoder()
    texts = ["you never listen", "put your manager on", "fine"]
    before = encoder.embed(texts)
    cache = LayerCache(encoder, blocks=1, log=lambda line: None)
    cache.add(texts)
    with torch.inference_mode():
        assert np.allclose(cache.top(texts).numpy(), before, atol=1e-5)  # the frozen layers' output, kept, then the top block
    updates = lowrank.attach(encoder.model, blocks=[1])
    assert updates and all(name.startswith("encoder.layer.1.") for name in updates)
    with torch.no_grad():
        for update in updates.values():
            update.b.normal_(0, 0.2)  # as if trained
        tuned = cache.top(texts).numpy()
    whole = encoder.embed(texts)  # every block, the adapter in place
    assert np.allclose(whole, tuned, atol=1e-5) and not np.allclose(tuned, before, atol=1e-3)
