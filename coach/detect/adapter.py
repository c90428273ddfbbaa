"""A low-rank adapter (LoRA) that tunes the sentence encoder to read a line's intent, not only its topic.

Frozen all-MiniLM-L6-v2 embeddings place "I'm about ready to sign with Vodafone" beside other talk
of contracts; a softmax over them finds barely any churn or blame that the phrase rules miss. ``make
train`` fine-tunes the encoder on the project's trigger exemplars through a small update to each of
its linear layers: ``W + scale * B @ A``, rank 8, about 0.3 M numbers against the encoder's 22 M. Only
``A`` and ``B`` are stored (``models/heads/triggers-adapter.npz``, and ``-1``, ``-2`` for the other
members of the trigger ensemble, each from its own seed); loading adds them into a copy of the
encoder's weights, so a member reads a sentence at the plain encoder's cost. The sentiment head is
trained on the first member's encoder too, so that pass reads a segment for both.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import torch

from coach.errors import ModelError

RANK = 8
ALPHA = 16.0  # the update is scaled by ALPHA / RANK


def _adapted_layers(model: torch.nn.Module, blocks: list[int] | None = None) -> list[tuple[str, torch.nn.Linear]]:
    """The linear layers of the encoder's transformer blocks (not the embeddings, not the pooler);
    with ``blocks``, those of these blocks only (``encoder.layer.<i>.``)."""
    prefixes = None if blocks is None else tuple(f"encoder.layer.{i}." for i in blocks)
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and "pooler" not in name.split(".")
            and (prefixes is None or name.startswith(prefixes))]


class LowRankUpdate(torch.nn.Module):
    """Wraps one ``nn.Linear`` while training: its output plus ``scale * x A^T B^T``; B starts at zero."""

    def __init__(self, linear: torch.nn.Linear, rank: int, scale: float, seed: int) -> None:
        super().__init__()
        self.linear = linear
        self.scale = scale
        generator = torch.Generator().manual_seed(seed)
        self.a = torch.nn.Parameter(torch.randn(rank, linear.in_features, generator=generator) / linear.in_features**0.5)
        self.b = torch.nn.Parameter(torch.zeros(linear.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + (x @ self.a.T @ self.b.T) * self.scale


def attach(model: torch.nn.Module, rank: int = RANK, alpha: float = ALPHA, seed: int = 0,
           blocks: list[int] | None = None) -> dict[str, LowRankUpdate]:
    """Freeze ``model`` and wrap each adapted layer (of ``blocks`` only, if given) in a trainable low-rank
    update; returns them by name. ``seed`` picks the updates' random starting points (0: those of the shipped adapter)."""
    for p in model.parameters():
        p.requires_grad = False
    updates = {}
    for i, (name, linear) in enumerate(_adapted_layers(model, blocks)):
        parent_name, _, child = name.rpartition(".")
        update = LowRankUpdate(linear, rank, alpha / rank, seed=seed * 1000 + i)
        setattr(model.get_submodule(parent_name) if parent_name else model, child, update)
        updates[name] = update
    return updates


def save(updates: dict[str, LowRankUpdate], path: Path) -> None:
    arrays = {}
    for name, update in updates.items():
        arrays[f"{name}.a"] = update.a.detach().numpy().astype(np.float32)
        arrays[f"{name}.b"] = (update.b.detach().numpy() * update.scale).astype(np.float32)  # the scale folded into B
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w") as archive:  # an .npz whose bytes depend on the numbers alone (no clock)
        for key in sorted(arrays):
            entry = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, arrays[key])
            archive.writestr(entry, buffer.getvalue())
    tmp.replace(path)


def fingerprint(path: Path) -> str:
    """What identifies a stored adapter: a digest of its bytes."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise ModelError(f"trigger adapter {path} is unreadable ({exc.strerror}): run `make train`") from None


def merge(model: torch.nn.Module, path: Path) -> None:
    """Add the stored update into ``model``'s weights, in place."""
    try:
        stored = np.load(path)
    except FileNotFoundError:
        raise ModelError(f"trigger adapter {path} not found: run `make train` to build it") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"trigger adapter {path} is unreadable ({exc}): run `make train`") from None
    layers = dict(_adapted_layers(model))
    names = {key.rsplit(".", 1)[0] for key in stored.files}
    if names != set(layers):
        raise ModelError(f"trigger adapter {path} was trained for another encoder: run `make train` with this one")
    with torch.no_grad():
        for name in sorted(names):
            a, b = stored[f"{name}.a"], stored[f"{name}.b"]
            weight = layers[name].weight
            if b.shape[0] != weight.shape[0] or a.shape[1] != weight.shape[1]:
                raise ModelError(f"trigger adapter {path} does not fit layer {name}: run `make train` with this encoder")
            weight += torch.from_numpy(b @ a).to(weight.dtype)
