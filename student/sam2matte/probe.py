"""Session-4 probe (docs/sam2-matte.md), weights only: hand-wire the last memory-attention layer
to read the mask stored in memory at the same place (a RoPE locality prior on the query/key biases)
and write it along the residual-stream direction that separates object from background tokens
(out_proj += beta * d u^T / |u|^2, u = the memory encoder's mask direction in the value space).
Directions are measured on training-range synthetic clips (seeds 500..515), never on the
tuning (3,000,001+) or held-out (2,000,001+) seeds. Training erased the wiring within ~150 steps
(runs E and F in the docs)."""
from __future__ import annotations

import sys

import torch

from . import adapter
from .data import synthetic_clip, to_tensors
from .model import add_locality_bias


@torch.no_grad()
def wire(m, beta=1.0, locality=16.0, seeds=range(500, 516), size=128):
    import torch.nn.functional as F

    mm = m.tied_copy(size) if m.config.image_size != size else m
    ma = mm.sam.memory_attention
    last = ma.layers[-1]
    ca = last.cross_attn_image
    outs, vs, fgq, fgm, v1s, v0s = [], [], [], [], [], []
    for s in seeds:
        f, a = synthetic_clip(s, 2, size, 0.0)
        b = to_tensors(f, a, size)
        feat, h0, h1 = mm.encode(b["frames"])
        g = (b["alpha"] > 0.5).float()[:, None]
        low, hr, ptr, sc = adapter.mask_as_output(mm.sam, feat[:1], h0[:1], h1[:1], g[:1])
        mem = mm.memorize(feat[:1], hr, sc)  # [1,Cm,h,w]
        ones = torch.ones_like(g[:1]); zeros = torch.zeros_like(g[:1])
        m1 = mm.memorize(feat[:1], ones * 20 - 10, sc * 0 + 10)
        m0 = mm.memorize(feat[:1], zeros * 20 - 10, sc * 0 + 10)
        v1s.append(ca.v_proj(m1.flatten(2).transpose(1, 2)[0])); v0s.append(ca.v_proj(m0.flatten(2).transpose(1, 2)[0]))
        # residual stream before the final norm, on frame 1 (capture via a hook on ma.norm)
        cap = {}
        hk = ma.norm.register_forward_hook(lambda mod, inp, out: cap.__setitem__("x", inp[0]))
        bank = mm.new_bank(1); bank.add(mem, ptr, True)
        adapter.condition_on_memory(mm.sam, (mm.rope_sa, mm.rope_ca), feat[1:2], mm.img_pos, mm.mem_pos, *bank.inputs())
        hk.remove()
        hw = feat.shape[-1]
        gq = F.interpolate(g[1:2], size=(hw, hw), mode="area").flatten()  # fraction fg per token
        gm = F.interpolate(g[0:1], size=(hw, hw), mode="area").flatten()
        outs.append(cap["x"][0]); fgq.append(gq)
        vs.append(ca.v_proj(mem.flatten(2).transpose(1, 2)[0])); fgm.append(gm)
    X = torch.cat(outs); q = torch.cat(fgq); V = torch.cat(vs); r = torch.cat(fgm)
    d = X[q > 0.9].mean(0) - X[q < 0.1].mean(0)           # 'object' direction in the residual stream
    V1, V0 = torch.cat(v1s), torch.cat(v0s)
    u = (V1 - V0).mean(0)                                   # 'mask' direction in the memory values (same pixels)
    vmid = ((V1 + V0) / 2).mean(0)
    print("mask effect consistency", float(F.cosine_similarity(V1 - V0, u[None], dim=1).mean()))
    # attention output o ~ local average of v; add W = beta * d u^T / (u.u), bias -W vmid so that a
    # fully-foreground memory neighbourhood adds +beta*d/2, background -beta*d/2
    W = beta * torch.outer(d, u) / (u @ u)
    ca.out_proj.weight.add_(W)
    ca.out_proj.bias.add_(-(W @ vmid))
    if locality > 0:
        add_locality_bias(ca, locality)
    return float(d.norm()), float(u.norm())

if __name__ == "__main__":  # python -m mamakit.student.sam2matte.probe IN OUT BETA LOCALITY
    from .io import load_sam2_matte

    m = load_sam2_matte(sys.argv[1])
    print(wire(m, beta=float(sys.argv[3]), locality=float(sys.argv[4])))
    m.save_pretrained(sys.argv[2])
