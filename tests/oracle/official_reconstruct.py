"""Run the OFFICIAL ``zuna.reconstruct_fif`` (zuna 1.1.6, checkpoint ZUNA1.1) on one .fif with given
weights and given sampler noise; save its hybrid / full reconstruction and what it fed the model.

Run this with the Python of the zuna 1.1.6 oracle venv (tests/oracle/setup_venvs.sh), never with
the project's own environment:

    .oracle/zuna-1.1.6/bin/python tests/oracle/official_reconstruct.py \\
        --fif rec_raw.fif --ckpt CKPT --noise NOISE.npz --steps 8 --segment-sec 5 --work DIR --out OUT.npz

What runs is the official code path, unchanged: ``zuna.pipeline.reconstruct_fif(input_dir,
output_dir, figures_dir, tmp_dir, segment_sec=..., sample_steps=..., diffusion_cfg=...)`` builds
its overrides of ``config_infer_fif.yaml`` and starts ``eeg_eval.py`` with them; ``eeg_eval.main``
builds the model (``init_model``), the ``EEGDataset_v4`` loader + collate, the ``EEGProcessor``
and the ``FifReconstructor`` (``init_data_batch``), and ``evaluate`` runs its loop: ÷ data_norm,
clip, ``process`` (masking), ``model.sample``, ``unwrap_all_the_signals`` (``invert_reshape_signals``),
``FifReconstructor.add_batch``, then ``save_all`` (stitching, ``_seam_correct_hybrid`` on the
stitched recording, ``ZUNA1.1_infilled`` annotations), which writes
``<output_dir>/hybrid/<base>_raw.fif`` and ``<output_dir>/full_reconstruction/<base>_raw.fif``.

Replaced, and nothing else:

1. ``subprocess.run`` of the ``eeg_eval.py`` command: the same command runs IN this process
   (``runpy`` of the same ``eeg_eval.py`` as ``__main__``, with the same argv, the environment
   changes ``reconstruct_fif`` makes, and the ``sys.path`` that its PYTHONPATH gives), so that
   items 2–4 reach it. Other ``subprocess.run`` calls pass through.
2. ``huggingface_hub.hf_hub_download`` (used by ``init_model`` for ``Zyphra/ZUNA1.1``): returns
   ``config.json`` / ``model-00001-of-00001.safetensors`` of ``--ckpt`` instead of downloading.
   ``init_model`` itself parses the config and does the strict ``load_state_dict``.
3. The one noise draw of ``EncoderDecoder.sample`` (``torch.randn_like(encoder_input)``, scaled by
   ``global_sigma`` there): during each ``sample`` call ``torch.randn_like`` returns the
   ``--noise`` arrays of the packed documents instead, in packing order (document k of the
   recording = segment k, checked against the ``v4_seg_start`` that reaches ``add_batch``).
   The call must draw exactly once with the packed shape, or this script fails.
4. ``lingua.distributed.get_master_port``: a free localhost port for eeg_eval's single-process
   gloo group, instead of the fixed port derived from the absent SLURM job id (concurrent runs
   would collide on it).

Also, ``plot_reconstruction_overlay`` (the figures ``reconstruct_fif`` draws AFTER eeg_eval has
written the .fif files) is a no-op here: it reads the outputs and writes PNGs only.

``add_batch`` and ``sample`` are wrapped to RECORD what the official code passes (their behaviour
is unchanged). The output .npz holds: ``hybrid`` and ``full`` (C, N) as read back from the
official .fif files (float32 data, as written), ``ch_names``, ``sfreq``, ``out_bads``, the
infill annotations (``ann_onset``, ``ann_duration``, ``ann_description``, ``ann_ch_names`` as
JSON), ``seg_start`` (n_segments,), and per segment i: ``tokens_i`` (S, 32) — the encoder input
(÷10, clipped, masked tokens zeroed) — ``tok_idx_i`` (S, 4), ``token_mask_i`` (S,) bool, the
``noise_i`` (S, 32) it was given, ``mask_i`` (C, T) — the sample mask the reconstructor
buffered — and ``hybrid_seg_i`` (C, T): that segment's hybrid before stitching / seam correction.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import runpy
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fif", required=True)
    parser.add_argument("--ckpt", required=True, help="folder with config.json + model-00001-of-00001.safetensors")
    parser.add_argument("--noise", required=True, help=".npz with noise_<i> (S_i, 32) per segment, official token order")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--cfg", type=float, default=1.0)
    parser.add_argument("--segment-sec", type=float, default=5.0)
    parser.add_argument("--work", required=True, help="scratch folder (created)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    import zuna
    if zuna.__version__ != "1.1.6":
        raise SystemExit(f"expected zuna 1.1.6, found {zuna.__version__}")
    # eeg_eval.py runs as a script from app_dir with PYTHONPATH=lingua_root:app_dir (see
    # reconstruct_fif): import the official modules from there, so that the patches below
    # reach the very modules eeg_eval uses.
    app_dir = Path(zuna.__file__).parent / "inference/AY2l/lingua/apps/AY2latent_bci"
    lingua_root = app_dir.parent.parent
    sys.path[:0] = [str(app_dir), str(lingua_root)]

    import huggingface_hub
    import torch
    import lingua.distributed
    from apps.AY2latent_bci import eeg_data, transformer
    import zuna.pipeline
    import zuna.visualization.reconstruction_overlay as overlay

    noise_file = np.load(args.noise)
    noise_by_segment = [noise_file[f"noise_{i}"] for i in range(len([k for k in noise_file.files if k.startswith("noise_")]))]
    ckpt = Path(args.ckpt).absolute()

    # 2. weights from --ckpt
    real_hf_hub_download = huggingface_hub.hf_hub_download

    def local_hf_hub_download(repo_id, filename, *a, **kw):
        if repo_id != "Zyphra/ZUNA1.1":
            raise RuntimeError(f"unexpected hub download {repo_id}/{filename}")
        return str(ckpt / filename)

    huggingface_hub.hf_hub_download = local_hf_hub_download

    # 3. noise of EncoderDecoder.sample; record what sample() is given.
    recorded = dict(sample_calls=[], batches=[], reconstructor=None)
    real_sample = transformer.EncoderDecoder.sample
    real_randn_like = torch.randn_like

    def sample_with_noise(self, encoder_input, seq_lens, tok_idx, sample_steps=50, cfg=1.0):
        first = sum(len(call["seq_lens"]) for call in recorded["sample_calls"])
        lens = [int(n) for n in seq_lens.cpu()]
        parts = []
        for k, n in enumerate(lens):
            noise = noise_by_segment[first + k]
            if noise.shape != (n, encoder_input.shape[-1]):
                raise RuntimeError(f"noise for document {first + k} has shape {noise.shape}, the document {(n, encoder_input.shape[-1])}")
            parts.append(noise)
        packed = torch.from_numpy(np.concatenate(parts)).reshape(encoder_input.shape)
        draws = []

        def given_noise(like, **kw):
            if like.shape != packed.shape:
                raise RuntimeError(f"unexpected torch.randn_like{tuple(like.shape)} in sample()")
            draws.append(1)
            return packed.clone().to(dtype=like.dtype, device=like.device)

        torch.randn_like = given_noise
        try:
            out = real_sample(self, encoder_input, seq_lens, tok_idx, sample_steps=sample_steps, cfg=cfg)
        finally:
            torch.randn_like = real_randn_like
        if len(draws) != 1:
            raise RuntimeError(f"sample() drew noise {len(draws)} times, expected once")
        recorded["sample_calls"].append(dict(
            encoder_input=encoder_input.detach().cpu().numpy().reshape(-1, encoder_input.shape[-1]),
            tok_idx=tok_idx.detach().cpu().numpy().reshape(-1, tok_idx.shape[-1]),
            seq_lens=lens, noise=packed.numpy().reshape(-1, encoder_input.shape[-1]),
            steps=int(sample_steps), cfg=float(cfg)))
        return out

    transformer.EncoderDecoder.sample = sample_with_noise

    # Record what add_batch receives (behaviour unchanged).
    real_add_batch = eeg_data.FifReconstructor.add_batch

    def recording_add_batch(self, batch, *a, **kw):
        recorded["reconstructor"] = self
        recorded["batches"].append(dict(
            seg_start=[int(s) for s in batch["v4_seg_start"]],
            seq_lens=[int(n) for n in batch["seq_lens"].cpu()],
            token_dropout=batch["token_dropout"].cpu().numpy().reshape(-1).astype(bool)))
        return real_add_batch(self, batch, *a, **kw)

    eeg_data.FifReconstructor.add_batch = recording_add_batch

    # 4. a free port for the gloo group
    port = _free_port()
    lingua.distributed.get_master_port = lambda job_id: port

    # 1. eeg_eval in this process
    real_run = subprocess.run

    def run_in_process(cmd, *a, env=None, check=False, **kw):
        if not (isinstance(cmd, (list, tuple)) and len(cmd) > 1 and str(cmd[1]).endswith("eeg_eval.py")):
            return real_run(cmd, *a, env=env, check=check, **kw)
        saved_env, saved_argv = dict(os.environ), list(sys.argv)
        try:
            if env is not None:
                os.environ.clear()
                os.environ.update(env)
            os.environ["TORCHDYNAMO_DISABLE"] = "1"      # CPU: init_model disables compile too
            sys.argv = [str(c) for c in cmd[1:]]
            runpy.run_path(str(cmd[1]), run_name="__main__")
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            sys.argv = saved_argv
        return subprocess.CompletedProcess(cmd, 0)

    subprocess.run = run_in_process
    overlay.plot_reconstruction_overlay = lambda *a, **kw: None

    work = Path(args.work).absolute()
    for name in ("in", "out", "figures", "tmp"):
        (work / name).mkdir(parents=True, exist_ok=True)
    fif = Path(args.fif)
    shutil.copy(fif, work / "in" / fif.name)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            zuna.pipeline.reconstruct_fif(
                input_dir=str(work / "in"), output_dir=str(work / "out"), figures_dir=str(work / "figures"),
                tmp_dir=str(work / "tmp"), segment_sec=args.segment_sec, diffusion_cfg=args.cfg,
                sample_steps=args.steps)
    except BaseException:
        sys.stderr.write(log.getvalue()[-6000:])
        raise
    finally:
        subprocess.run = real_run
        transformer.EncoderDecoder.sample = real_sample
        eeg_data.FifReconstructor.add_batch = real_add_batch
        huggingface_hub.hf_hub_download = real_hf_hub_download
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    import mne

    base = fif.stem.replace("_raw", "")
    hybrid = mne.io.read_raw_fif(work / "out" / "hybrid" / f"{base}_raw.fif", preload=True, verbose="error")
    full = mne.io.read_raw_fif(work / "out" / "full_reconstruction" / f"{base}_raw.fif", preload=True, verbose="error")
    ann = hybrid.annotations

    # Per-segment arrays: documents of the sample() calls, in order = the add_batch batches.
    calls, batches = recorded["sample_calls"], recorded["batches"]
    if [c["seq_lens"] for c in calls] != [b["seq_lens"] for b in batches]:
        raise RuntimeError("sample() calls and add_batch batches do not line up")
    seg_starts = [s for b in batches for s in b["seg_start"]]
    if seg_starts != sorted(seg_starts) or len(seg_starts) != len(noise_by_segment):
        raise RuntimeError(f"segments {seg_starts} are not the {len(noise_by_segment)} segments in order")
    out = dict(hybrid=hybrid.get_data().astype(np.float32), full=full.get_data().astype(np.float32),
               ch_names=np.array(hybrid.ch_names), sfreq=float(hybrid.info["sfreq"]),
               out_bads=np.array(list(hybrid.info["bads"]), dtype=str),
               ann_onset=np.asarray(ann.onset, float), ann_duration=np.asarray(ann.duration, float),
               ann_description=np.array(list(ann.description), dtype=str),
               ann_ch_names=json.dumps([list(c) for c in ann.ch_names]),
               seg_start=np.array(seg_starts), steps=args.steps, cfg=args.cfg,
               zuna_version=zuna.__version__)
    index = 0
    for call, batch in zip(calls, batches):
        offset = 0
        for n in call["seq_lens"]:
            out[f"tokens_{index}"] = call["encoder_input"][offset:offset + n].astype(np.float32)
            out[f"tok_idx_{index}"] = call["tok_idx"][offset:offset + n].astype(np.int64)
            out[f"noise_{index}"] = call["noise"][offset:offset + n].astype(np.float32)
            out[f"token_mask_{index}"] = batch["token_dropout"][offset:offset + n]
            offset += n
            index += 1
    (segments,) = recorded["reconstructor"].buffer.values()          # one input file
    buffered = {seg_start: (hybrid_seg, mask_seg) for seg_start, _, _, hybrid_seg, mask_seg, _ in segments}
    for i, seg_start in enumerate(seg_starts):
        out[f"hybrid_seg_{i}"], out[f"mask_{i}"] = buffered[seg_start]
    np.savez(args.out, **out)
    print(json.dumps({"zuna": zuna.__version__, "segments": len(seg_starts), "shape": list(out["hybrid"].shape)}))


if __name__ == "__main__":
    sys.exit(main())
