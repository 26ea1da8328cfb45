#!/usr/bin/python3
"""Golden numbers for test/train/adamw.test.ts, from torch.optim.AdamW.

Two parameter tensors: "w" [3, 4] with weight decay 0.1 and "b" [4] without
(two param groups), betas (0.9, 0.95), eps 1e-8, five steps with the learning
rates LRS and gradients g_t = sin(0.7 * (index + 1) * (t + 1)) * scale_t
(index over the concatenation w then b). Writes adamw.json: the initial
parameters, the gradients, the parameters after every step, and the final
exp_avg / exp_avg_sq, all as flat lists over the concatenation w then b.

Run with Debian's torch: /usr/bin/python3 test/train/golden/make_adamw_golden.py
"""
import json
import math
import os

import torch

LRS = [1e-2, 3e-2, 3e-2, 5e-3, 0.0]
SCALES = [1.0, 0.1, 10.0, 1.0, 2.0]
torch.manual_seed(0)
w = torch.nn.Parameter(torch.randn(3, 4))
b = torch.nn.Parameter(torch.randn(4))
opt = torch.optim.AdamW(
    [{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}],
    lr=LRS[0], betas=(0.9, 0.95), eps=1e-8, foreach=False,
)
flat = lambda: torch.cat([w.detach().reshape(-1), b.detach().reshape(-1)]).tolist()
out = {"format": "offtune-golden", "version": 1, "torch": torch.__version__, "lrs": LRS,
       "initial": flat(), "grads": [], "after": []}
for t, lr in enumerate(LRS):
    g = [math.sin(0.7 * (i + 1) * (t + 1)) * SCALES[t] for i in range(16)]
    w.grad = torch.tensor(g[:12], dtype=torch.float32).reshape(3, 4)
    b.grad = torch.tensor(g[12:], dtype=torch.float32)
    out["grads"].append(torch.tensor(g, dtype=torch.float32).tolist())
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()
    out["after"].append(flat())
state = [opt.state[w], opt.state[b]]
out["exp_avg"] = torch.cat([s["exp_avg"].reshape(-1) for s in state]).tolist()
out["exp_avg_sq"] = torch.cat([s["exp_avg_sq"].reshape(-1) for s in state]).tolist()
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "adamw.json"), "w") as f:
    json.dump(out, f, indent=1)
