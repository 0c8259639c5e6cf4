"""Run the OFFICIAL zuna model (inside an oracle venv) to produce parity references.

Usage (with .oracle/zuna-<version>/bin/python):
  official_model.py build --out DIR --seed N [--key-prefix] [--dim .. --n-layers .. --n-heads .. --head-dim .. --t-dim ..]
      Build the official EncoderDecoder from a small config, run its own init_weights(), then give
      norms and time conditioning non-trivial values, and save it in the HF layout.
  official_model.py run --ckpt DIR --inputs IN.npz --out OUT.npz [--bf16]
      Load DIR the way the official inference does (config.json "model" -> DecoderTransformerArgs,
      strip "model.", strict load) and run the encoder and sample() on packed documents with the
      recorded noise. fp32 runs with autocast disabled; --bf16 also runs the official bf16 autocast.
"""
import argparse
import contextlib
import json
import os
import sys

import numpy as np
import torch

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
from apps.AY2latent_bci.transformer import DecoderTransformerArgs, EncoderDecoder  # noqa: E402
from lingua.args import dataclass_from_dict  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

VARIANT_FIELDS = {
    # Fields of the official dataclass that differ between the two versions.
    "0.1.1": {"dropout_type": "zeros", "max_seqlen": 50},
    "1.1.6": {"dropout_vec_type": "zeros", "max_seqlen": 256, "ape_dim": 0},
}


def official_version():
    from importlib.metadata import version
    return version("zuna")


def build(args):
    torch.manual_seed(args.seed)
    fields = dict(dim=args.dim, n_layers=args.n_layers, head_dim=args.head_dim, n_heads=args.n_heads, t_dim=args.t_dim,
                  input_dim=32, encoder_input_dim=32, encoder_output_dim=32, encoder_latent_downsample_factor=1,
                  encoder_sliding_window=65536, sliding_window=65536, xattn_sliding_window=65536,
                  rope_dim=4, rope_theta=10000.0, tok_idx_type="{x,y,z,tc}", stft_global_sigma=0.1,
                  num_fine_time_pts=32, huber_c=None, seqlen_t=False)
    fields.update(VARIANT_FIELDS[official_version()])
    model_args = dataclass_from_dict(DecoderTransformerArgs, fields)
    model = EncoderDecoder(model_args)
    model.init_weights()
    if not args.official_init:
        perturb_conditioning(model)
    prefix = "model." if args.key_prefix else ""
    state = {prefix + k: v.contiguous() for k, v in model.state_dict().items()}
    os.makedirs(args.out, exist_ok=True)
    save_file(state, os.path.join(args.out, "model-00001-of-00001.safetensors"))
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump({"model": fields}, f, indent=2)


def perturb_conditioning(model):
    """Official init leaves AdaRMSNorm at gain exactly 1 and time features tiny: perturb so they matter."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight.weight"):
                p.normal_(0.0, 0.3 * p.shape[1] ** -0.5)
            elif "norm" in name and name.endswith("weight.bias"):
                p.normal_(1.0, 0.1)
            elif "norm" in name and name.endswith("weight"):
                p.normal_(1.0, 0.1)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02)
        model.decoder.t_embedder.weight.normal_(0.0, 2.0)
        model.encoder.registers.normal_(0.0, 0.5)


def load(ckpt):
    with open(os.path.join(ckpt, "config.json")) as f:
        fields = json.load(f)["model"]
    version = official_version()
    known = set(DecoderTransformerArgs.__dataclass_fields__)
    fields = {k: v for k, v in fields.items() if k in known}   # version-specific extras are dropped
    model = EncoderDecoder(dataclass_from_dict(DecoderTransformerArgs, fields))
    state = load_file(os.path.join(ckpt, "model-00001-of-00001.safetensors"))
    state = {k.removeprefix("model."): v.float() for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    return model.eval(), version


def run(args):
    model, version = load(args.ckpt)
    data = np.load(args.inputs)
    tokens = torch.from_numpy(data["tokens"]).float()        # [B, S, 32]
    tok_idx = torch.from_numpy(data["tok_idx"]).long()       # [B, S, 4]
    noise = torch.from_numpy(data["noise"]).float()          # [B, S, 32]
    steps = int(data["steps"])
    cfgs = [float(c) for c in data["cfgs"]]
    n_docs, seqlen, _ = tokens.shape
    packed = tokens.reshape(1, n_docs * seqlen, 32)
    packed_idx = tok_idx.reshape(1, n_docs * seqlen, 4)
    packed_noise = noise.reshape(1, n_docs * seqlen, 32)
    seq_lens = torch.full((n_docs,), seqlen, dtype=torch.long)

    def encoder(x):
        out = model.encoder(token_values=x, seq_lens=seq_lens, tok_idx=packed_idx,
                            do_idx=(x.sum(axis=2) == 0).squeeze(0))
        return out[0]

    real_randn_like = torch.randn_like
    results = {}

    @contextlib.contextmanager
    def recorded_noise():
        torch.randn_like = lambda like, **kw: packed_noise.clone().to(like.dtype)
        try:
            yield
        finally:
            torch.randn_like = real_randn_like

    @contextlib.contextmanager
    def no_autocast():
        real = torch.autocast
        torch.autocast = lambda *a, **k: contextlib.nullcontext()
        try:
            yield
        finally:
            torch.autocast = real

    with torch.no_grad():
        with no_autocast():
            results["latents_fp32"] = encoder(packed).float().reshape(n_docs, seqlen, -1).numpy()
            for cfg in cfgs:
                with recorded_noise():
                    z, _ = model.sample(packed, seq_lens, packed_idx, sample_steps=steps, cfg=cfg)
                results[f"sample_fp32_cfg{cfg:g}"] = z.float().reshape(n_docs, seqlen, -1).numpy()
        if args.bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                results["latents_bf16"] = encoder(packed).float().reshape(n_docs, seqlen, -1).numpy()
            for cfg in cfgs:
                with recorded_noise():
                    z, _ = model.sample(packed, seq_lens, packed_idx, sample_steps=steps, cfg=cfg)
                results[f"sample_bf16_cfg{cfg:g}"] = z.float().reshape(n_docs, seqlen, -1).numpy()
    np.savez(args.out, version=version, **results)


def time_it(args):
    """Wall-clock of the official encoder and sample() on packed documents (CPU benchmark)."""
    import time
    torch.set_num_threads(args.threads)
    model, version = load(args.ckpt)
    data = np.load(args.inputs)
    tokens = torch.from_numpy(data["tokens"]).float()
    tok_idx = torch.from_numpy(data["tok_idx"]).long()
    n_docs, seqlen, _ = tokens.shape
    packed, packed_idx = tokens.reshape(1, -1, 32), tok_idx.reshape(1, -1, 4)
    seq_lens = torch.full((n_docs,), seqlen, dtype=torch.long)
    timings = {}
    with torch.no_grad():
        for name, fn in [
            ("encode", lambda: model.encoder(token_values=packed, seq_lens=seq_lens, tok_idx=packed_idx,
                                             do_idx=(packed.sum(axis=2) == 0).squeeze(0))),
            ("reconstruct", lambda: model.sample(packed, seq_lens, packed_idx, sample_steps=args.steps, cfg=1.0)),
        ]:
            fn()   # warm-up
            runs = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                fn()
                runs.append(time.perf_counter() - start)
            timings[name] = min(runs)
    print(json.dumps(dict(version=version, **timings)))


def main(argv=None):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", required=True)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--key-prefix", action="store_true")
    b.add_argument("--dim", type=int, default=64)
    b.add_argument("--n-layers", type=int, default=2)
    b.add_argument("--n-heads", type=int, default=4)
    b.add_argument("--head-dim", type=int, default=16)
    b.add_argument("--t-dim", type=int, default=32)
    b.add_argument("--official-init", action="store_true",
                   help="keep the official init_weights() as it is (no perturbation of norms and time conditioning)")
    r = sub.add_parser("run")
    r.add_argument("--ckpt", required=True)
    r.add_argument("--inputs", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--bf16", action="store_true")
    t = sub.add_parser("time")
    t.add_argument("--ckpt", required=True)
    t.add_argument("--inputs", required=True)
    t.add_argument("--steps", type=int, default=10)
    t.add_argument("--repeats", type=int, default=2)
    t.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    {"build": build, "run": run, "time": time_it}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
