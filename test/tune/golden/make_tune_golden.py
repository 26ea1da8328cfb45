#!/usr/bin/python3
"""Golden numbers for test/tune/golden.test.ts: adapter tuning in PyTorch.

On the fixture fixtures/golden/opt (2 blocks; rebuilt here from the same
seed by fixtures/golden/make_golden.py's independent OPT forward, on the
float16-rounded weights the fixture stores), block 0 is the adapter (split
1+0) and block 1 the frozen middle. The two sequences of the fixture are the
training items; each item's answer is its loss-masked tail (row 0 from
token 4, row 1 from token 6). STEPS full-batch steps, each:

    loss = mean cross-entropy over the answer tokens of both rows
    loss.backward()  (block 0's weights only require grad)
    clip_grad_norm_(block 0 weights, CLIP)
    torch.optim.AdamW(lr LR, betas (0.9, 0.95), eps 1e-8, weight_decay 0).step()

Writes tune_steps.json: the settings, the loss and pre-clip gradient norm of
every step, and block 0's weights after the last step (HF names and layout),
each as {"shape", "f32": base64 little-endian float32}.

Run with Debian's torch: /usr/bin/python3 test/tune/golden/make_tune_golden.py
"""
import base64
import json
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in fixtures/golden
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "fixtures", "golden"))
import make_golden as mg  # noqa: E402

STEPS, LR, CLIP = 3, 1e-2, 0.5


def array(t):
    data = t.detach().to(torch.float32).contiguous().numpy().tobytes()
    return {"shape": list(t.shape), "f32": base64.b64encode(data).decode("ascii")}


def main():
    torch.set_num_threads(1)
    config, dtype, params, forward = mg.opt_fixture(
        True, "F16", d=64, heads=4, ffn=128, layers=2, vocab=272, max_pos=32, seed=1
    )
    ids, loss_mask = mg.inputs(272, 2, 9, seed=100)
    with open(os.path.join(HERE, "..", "..", "..", "fixtures", "golden", "opt", "golden.json")) as f:
        assert json.load(f)["input_ids"] == ids.tolist(), "fixture inputs differ: rebuild fixtures/golden first"
    weights = {k: v.to(mg.TORCH_DTYPES[dtype]).to(torch.float32) for k, v in params.items()}
    adapter = sorted(k for k in weights if k.startswith("model.decoder.layers.0."))
    for k in adapter:
        weights[k].requires_grad_(True)
    opt = torch.optim.AdamW([weights[k] for k in adapter], lr=LR, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.0, foreach=False)
    target_mask = loss_mask[:, 1:].reshape(-1).to(torch.float32)
    losses, norms = [], []
    for _ in range(STEPS):
        logits, _ = forward(weights, ids)
        per_token = F.cross_entropy(logits[:, :-1].reshape(-1, 272), ids[:, 1:].reshape(-1), reduction="none")
        loss = (per_token * target_mask).sum() / target_mask.sum()
        opt.zero_grad()
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_([weights[k] for k in adapter], CLIP).item())
        opt.step()
        losses.append(loss.item())
    golden = {
        "format": "offtune-golden",
        "version": 1,
        "torch": torch.__version__,
        "steps": STEPS, "lr": LR, "clip": CLIP,
        "answer_start": [int(loss_mask[r].nonzero()[0]) for r in range(2)],
        "losses": losses,
        "grad_norms": norms,
        "block0_after": {k[len("model.decoder.layers.0."):]: array(weights[k]) for k in adapter},
    }
    with open(os.path.join(HERE, "tune_steps.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print(f"losses {losses}, grad norms {norms}")


if __name__ == "__main__":
    main()
