"""Where a bf16 encoder block's error enters on the CPU: one rounding site at a time, one block at a time.

    python benchmarks/probe_cpu_precision.py CKPT --blocks 0,4,8 [--threads 2]
    python benchmarks/probe_cpu_precision.py CKPT --margins '{"decoder_ffn_from": 2}' [--steps 50]

``--margins POLICY`` (a JSON dict of :class:`zuna_lab.fast.cpu.CpuPolicy` fields, ``{}`` for the
default) instead prints that policy's errors against the exact path (issue #21's margins): the
latents of the 15 s sample (3 epochs) and of its first epoch (1 x 12 channels, 5 s), and the
``--steps``-step samples of that epoch, the same noise (seed 0) on both sides.

Runs the exact fp32 encoder of the checkpoint on the 15 s, 12-channel sample (tokens [3, 480, 32]),
then, for each block in ``--blocks``, that block alone with bf16 rounding at one site (all other
arithmetic fp32, all other blocks exact), and prints the relative L2 distance of the latents from
the exact ones (x 1e-3). Sites (``r`` = round to bf16 and back):

- attention: ``ax`` input, ``aw`` wq/wk/wv weights, ``ao`` q/k/v outputs, ``aqk`` q/k after the
  QK-norm and after RoPE, ``sdpa`` the attention core in bf16 (its output is wo's input),
  ``wow`` wo weight, ``woo`` wo output;
- SwiGLU: ``fx`` input, ``fw13`` w1/w3 weights, ``fo13`` gate and up outputs, ``fsilu`` silu(gate)
  and the product, ``fw2`` w2 weight, ``fo2`` w2 output;
- ``all``: every site (what a plain bf16 block does on the CPU).

The sites add in quadrature to within ~10 %, so their squares say which rounding is worth
removing. Results and conclusions: benchmarks/cpu_notes.md ("Third round").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "sample1_raw.fif"
SITES = ("ax", "aw", "ao", "aqk", "sdpa", "wow", "woo", "fx", "fw13", "fo13", "fsilu", "fw2", "fo2")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _r(x: torch.Tensor, site: str, sites: set) -> torch.Tensor:
    return x.bfloat16().float() if site in sites else x


def _linear(x, linear, weight_site, out_site, sites):
    return _r(F.linear(x, _r(linear.weight, weight_site, sites)), out_site, sites)


def attention(block, h, rope, mask, sites):
    """The block's attention (fp32 arithmetic) with bf16 rounding at ``sites``."""
    from zuna_lab.model.layers import rope as rotate

    a, (cos, sin) = block.attention, rope
    x = _r(block.attention_norm(h), "ax", sites)
    bsz, length, _ = x.shape
    q, k, v = (_linear(x, w, "aw", "ao", sites).view(bsz, length, -1, a.head_dim) for w in (a.wq, a.wk, a.wv))
    if a.q_norm is not None:
        q, k = _r(a.q_norm(q), "aqk", sites), _r(a.k_norm(k), "aqk", sites)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    q, k = _r(rotate(q, cos, sin), "aqk", sites), _r(rotate(k, cos, sin), "aqk", sites)
    if "sdpa" in sites:
        out = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), attn_mask=mask).float()
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out = _linear(out.transpose(1, 2).reshape(bsz, length, -1), a.wo, "wow", "woo", sites)
    return block.attention_post_norm(out) if block.attention_post_norm is not None else out


def swiglu(block, h, sites):
    """The block's SwiGLU (fp32 arithmetic) with bf16 rounding at ``sites``."""
    ffn = block.feed_forward
    x = _r(block.ffn_norm(h), "fx", sites)
    gate, up = _linear(x, ffn.w1, "fw13", "fo13", sites), _linear(x, ffn.w3, "fw13", "fo13", sites)
    hidden = _r(_r(F.silu(gate), "fsilu", sites) * up, "fsilu", sites)
    out = _linear(hidden, ffn.w2, "fw2", "fo2", sites)
    return block.ffn_post_norm(out) if block.ffn_post_norm is not None else out


def encoder_states(model, tokens, tok_idx):
    """The exact residual stream entering each encoder block, the RoPE angles, the mask, the latents."""
    from zuna_lab.model.encoder import positions, with_registers

    enc = model.encoder
    h = enc.embed(with_registers(tokens, enc.register, enc.dropout_vec))
    (cos, sin), mask = positions(tok_idx, enc.config)
    rope, states = (cos.unsqueeze(1), sin.unsqueeze(1)), []
    for block in enc.blocks:
        states.append(h)
        h = block(h, rope, mask)
    return states, rope, mask, enc.out(enc.norm(h[:, 0::2]))


def probe(model, tokens, tok_idx, blocks):
    """{block: {site: latents error}} for one site at a time and for all of them."""
    enc = model.encoder
    states, rope, mask, exact = encoder_states(model, tokens, tok_idx)
    result = {}
    for index in blocks:
        block, row = enc.blocks[index], {}
        for name, sites in [("all", set(SITES))] + [(s, {s}) for s in SITES]:
            h = states[index]
            h = h + attention(block, h, rope, mask, sites)
            h = h + swiglu(block, h, sites)
            for later in enc.blocks[index + 1:]:
                h = later(h, rope, mask)
            row[name] = rel(enc.out(enc.norm(h[:, 0::2])), exact)
        result[index] = row
        print(index, " ".join(f"{k}={v * 1e3:.2f}" for k, v in row.items()), flush=True)
    return result


def margins(ckpt, policy, steps, tokens, tok_idx):
    """(latents 3 epochs, latents 1 epoch, samples 1 epoch) relative L2 of ``policy`` against exact."""
    import zuna_lab as zl
    from zuna_lab.fast.cpu import CpuPolicy, build_cpu

    noise = torch.randn(tokens[:1].shape, generator=torch.Generator().manual_seed(0))
    errors = []
    for make in (lambda m: m, lambda m: build_cpu(m, CpuPolicy(**policy), copy_model=False)):
        model = make(zl.load_model(ckpt, device="cpu", dtype="fp32"))     # one full-size model at a time
        latents = model.encode(tokens[:1], tok_idx[:1])
        errors.append((model.encode(tokens, tok_idx), latents,
                       model.sample(latents, tok_idx[:1], noise=noise, steps=steps)))
        del model
    (a, b, c), (x, y, z) = errors
    return rel(x, a), rel(y, b), rel(z, c)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--blocks", default="0,4,8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--margins", help="a CpuPolicy as JSON: print its latents and samples errors")
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(args.threads)
    import zuna_lab as zl
    from zuna_lab.pipeline.preprocessing import preprocess
    from zuna_lab.pipeline.tokens import tokenize

    model = zl.load_model(args.ckpt, device="cpu", dtype="fp32")
    pre = preprocess(zl.read_raw(SAMPLE, verbose=False), model.variant)
    tokens, tok_idx = tokenize(np.stack(pre.data), pre.ch_pos, variant=model.variant)
    if args.margins is not None:
        import json

        del model
        with torch.no_grad():
            errors = margins(args.ckpt, json.loads(args.margins), args.steps, torch.from_numpy(tokens),
                             torch.from_numpy(tok_idx))
        print("latents (3 epochs) {:.2f}, latents (1 epoch) {:.2f}, {}-step samples {:.2f} (x 1e-3)".format(
            errors[0] * 1e3, errors[1] * 1e3, args.steps, errors[2] * 1e3))
        return
    with torch.no_grad():
        probe(model, torch.from_numpy(tokens), torch.from_numpy(tok_idx), [int(b) for b in args.blocks.split(",")])


if __name__ == "__main__":
    main()
