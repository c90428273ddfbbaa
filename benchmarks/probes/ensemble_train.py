"""Probe (issue 3): train extra trigger adapters with other seeds, same data and recipe as `make train`.

    COACH_MODELS_DIR=... python benchmarks/probes/ensemble_train.py 1 2   # writes /tmp/ens/adapter-sN.npz, head-sN.npz
"""
import sys, copy
from pathlib import Path
import numpy as np, torch
from coach.config import Settings
from coach import train as T
from coach.detect import adapter as lowrank
from coach.detect.encoder import TextEncoder
from coach.detect.exemplars import load_background, load_exemplars
from coach.detect.triggers import rule_flags
from coach.models import resolve_text_model

def tune(encoder, texts, y, classes, out, seed):
    torch.manual_seed(seed); torch.set_num_threads(T.TUNE_THREADS)
    model = copy.deepcopy(encoder.model).train()
    updates = lowrank.attach(model)
    with torch.no_grad():
        for i, u in enumerate(updates.values()):
            g = torch.Generator().manual_seed(seed * 1000 + i)
            u.a.copy_(torch.randn(u.a.shape, generator=g) / u.a.shape[1] ** 0.5)
    head = torch.nn.Linear(encoder.dimensions, classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(seed)) * 0.01); head.bias.zero_()
    params = [p for u in updates.values() for p in (u.a, u.b)] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=T.TUNE_RATE, weight_decay=0.01)
    order = torch.Generator().manual_seed(seed); target = torch.as_tensor(y)
    for epoch in range(T.TUNE_EPOCHS):
        for batch in torch.randperm(len(texts), generator=order).split(T.TUNE_BATCH):
            v = encoder.pool(model, [texts[i] for i in batch])
            loss = torch.nn.functional.cross_entropy(head(v * T.TUNE_SCALE), target[batch])
            opt.zero_grad(); loss.backward(); opt.step()
        print("seed", seed, "epoch", epoch, flush=True)
    lowrank.save(updates, out / f"adapter-s{seed}.npz")
    np.savez(out / f"head-s{seed}.npz", w=head.weight.detach().numpy().astype(np.float64) * T.TUNE_SCALE, b=head.bias.detach().numpy().astype(np.float64))

s = Settings().text
encoder = TextEncoder(resolve_text_model(s.encoder), s.threads)
sets = load_exemplars(s.exemplars); background = load_background(s.utterances, rule_flags)
labels = list(sets); texts, y = [], []
for c, name in enumerate(labels, start=1):
    texts += sets[name].examples + sets[name].not_; y += [c] * len(sets[name].examples) + [0] * len(sets[name].not_)
for speaker in sorted(background):
    trained = [l for i, l in enumerate(background[speaker]) if i % T.BACKGROUND_KEPT_OUT]
    texts += trained; y += [0] * len(trained)
print(len(texts), labels, flush=True)
for seed in map(int, sys.argv[1:]):
    tune(encoder, texts, np.array(y), len(labels) + 1, Path("/tmp/ens"), seed)
