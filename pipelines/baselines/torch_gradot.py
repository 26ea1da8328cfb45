"""Plain PyTorch GradOT on an OPT-shaped random model: the same-run baseline of
`offtune bench gradot` (never a runtime dependency; Debian's python3-torch).

Stages timed as the offtune pipeline times them: one calibration forward over
the whole model and a backward down to the lowest middle block, differentiating
the middle blocks' weights only (hooks capture each middle linear's inputs and
output gradients; autograd gives g), KFAC factors A = XᵀX/N and G = ΓᵀΓ/N
(Γ the summed-loss gradients), SVD of the attention projections, closed-form GCS of
DRD components and SCP channels (docs/METHOD.md §2). Prints one JSON object.

usage: python3 torch_gradot.py LAYERS HIDDEN HEADS FFN VOCAB SEQUENCES LENGTH
"""
import json
import resource
import sys
import time

import torch

torch.set_num_threads(1)
torch.manual_seed(0)
L, D, H, M, V, N, T = (int(a) for a in sys.argv[1:8])
SPLIT = 2


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = torch.nn.LayerNorm(D), torch.nn.LayerNorm(D)
        self.q, self.k, self.v, self.o = (torch.nn.Linear(D, D) for _ in range(4))
        self.fc1, self.fc2 = torch.nn.Linear(D, M), torch.nn.Linear(M, D)

    def forward(self, x):
        b, t, _ = x.shape
        a = self.ln1(x)
        split = lambda y: y.view(b, t, H, D // H).transpose(1, 2)
        q, k, v = split(self.q(a)) * (D // H) ** -0.5, split(self.k(a)), split(self.v(a))
        s = q @ k.transpose(-1, -2) + torch.full((t, t), float("-inf")).triu(1)
        x = x + self.o((s.softmax(-1) @ v).transpose(1, 2).reshape(b, t, D))
        return x + self.fc2(torch.relu(self.fc1(self.ln2(x))))


embed = torch.nn.Embedding(V, D)
pos = torch.nn.Embedding(T + 2, D)
blocks = torch.nn.ModuleList(Block() for _ in range(L))
final = torch.nn.LayerNorm(D)
for p in [*embed.parameters(), *pos.parameters(), *blocks.parameters()]:
    torch.nn.init.normal_(p, std=0.02) if p.dim() > 1 else None
# Only the middle blocks' weights are differentiated, as offtune's backward does (docs/GRADOT.md
# "Benchmarks"): no head/embedding weight gradient (a 2,048 x 768 x 50,272 product), no weight
# gradients of the adapter blocks, no backward below the lowest middle block.
for module in [embed, pos, final, *blocks[:SPLIT], *blocks[L - SPLIT:]]:
    module.requires_grad_(False)
ids = torch.randint(0, V, (N, T))
middle = range(SPLIT, L - SPLIT)
names = ["q", "k", "v", "o", "fc1", "fc2"]
inputs, grads = {}, {}


def hook(key):
    def forward_hook(mod, inp, out):
        inputs[key] = inp[0].detach()[:, :-1].reshape(-1, inp[0].shape[-1])
        out.register_hook(lambda g: grads.__setitem__(key, g.detach()[:, :-1].reshape(-1, g.shape[-1])))
    return forward_hook


for i in middle:
    for n in names:
        getattr(blocks[i], n).register_forward_hook(hook((i, n)))
times = {}
t0 = time.perf_counter()
h = embed(ids) + pos(torch.arange(T) + 2)
for blk in blocks:
    h = blk(h)
logits = final(h) @ embed.weight.T
loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
times["forward"] = time.perf_counter() - t0
t0 = time.perf_counter()
loss.backward()
times["backward"] = time.perf_counter() - t0

t0 = time.perf_counter()
count = N * (T - 1)
stats = {}
with torch.no_grad():
    for key, x in inputs.items():
        gamma = grads[key] * count  # summed-loss gradients
        weight = getattr(blocks[key[0]], key[1]).weight
        stats[key] = (x.T @ x / count, gamma.T @ gamma / count, weight.grad.T)  # g from autograd, kernel layout
times["kfac"] = time.perf_counter() - t0

t0 = time.perf_counter()
svds = {}
with torch.no_grad():
    for i in middle:
        for n in ["q", "k", "v", "o"]:
            svds[(i, n)] = torch.linalg.svd(getattr(blocks[i], n).weight.T, full_matrices=False)
times["svd"] = time.perf_counter() - t0

t0 = time.perf_counter()
with torch.no_grad():
    for (i, n), (u, s, vt) in svds.items():
        a, g_out, g = stats[(i, n)]
        # DRD: s_i ‖G u_i‖₁ ‖A v_i‖₁ + λ s_i u_iᵀ g v_i (kernel layout: v_i = U[:, i], u_i = Vt[i])
        score = s * (g_out @ vt.T).abs().sum(0) * (a @ u).abs().sum(0) + s * ((u.T @ g) * vt).sum(1)
    for i in middle:
        a1, g1, gr1 = stats[(i, "fc1")]
        a2, g2, gr2 = stats[(i, "fc2")]
        w1, w2 = blocks[i].fc1.weight.T, blocks[i].fc2.weight.T  # [D, M], [M, D]
        score = g1.abs().sum(0) * (a1 @ w1).abs().sum(0) + (w2 @ g2).abs().sum(1) * a2.abs().sum(0) \
            + (gr1 * w1).sum(0) + (gr2 * w2).sum(1)
times["score"] = time.perf_counter() - t0
print(json.dumps({"seconds": sum(times.values()), "stages": times, "layers": L,
                  "tokens": N * T, "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
