"""Run the OFFICIAL zuna preprocessing and data loader on .fif files; save the encoder input.

Run this with the Python of an oracle venv (tests/oracle/setup_venvs.sh), never with the
project's own environment: it imports the official ``zuna``, ``apps`` and ``lingua`` packages.

    .oracle/zuna-0.1.1/bin/python tests/oracle/official_preprocess.py --out OUT a_raw.fif ...
    .oracle/zuna-1.1.6/bin/python tests/oracle/official_preprocess.py --out OUT --segment-sec 5,4 a_raw.fif

What runs is the path each release documents for its checkpoint:

* zuna 0.1.1 (checkpoint Zyphra/ZUNA): ``zuna.preprocessing()`` writes .pt files; the
  inference data set ``EEGDataset_v2`` (configured from the packaged ``config_infer.yaml``)
  reads them back, discretises positions and chops tokens; then the two lines of
  ``eeg_eval.make_batch_iterator`` (÷ data_norm, clip) and the masking line of
  ``EEGProcessor.process`` are applied.
* zuna 1.1.6 (checkpoint Zyphra/ZUNA1.1): ``EEGDataset_v4`` (the loader of
  ``zuna.reconstruct_fif``, configured from ``config_infer_fif.yaml`` plus the overrides
  ``reconstruct_fif`` passes) reads the .fif directly; then the same ÷ / clip / mask steps.

For every input file (and every segment length for 1.1.6) one ``.npz`` is written:
``tokens`` (n_epochs, S, 32) float32 — the exact encoder input; ``tok_idx`` (n_epochs, S, 4)
int64; ``token_mask`` (n_epochs, S) bool; ``ch_names``; and the normalisation the official
code saved (0.1.1: ``global_mean``, ``global_std``, ``final_mean``, ``final_std``; 1.1.6:
per-segment ``seg_mean``/``seg_std`` (n_epochs, C), ``seg_start`` and ``avg_ref_offset_<i>``).
A segment of 1.1.6 may be shorter than the others, so arrays are stored per epoch as
``tokens_<i>`` / ``tok_idx_<i>`` when lengths differ.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np


def _stack_or_split(out, key, arrays):
    shapes = {a.shape for a in arrays}
    if len(shapes) == 1:
        out[key] = np.stack(arrays)
    for i, array in enumerate(arrays):
        out[f"{key}_{i}"] = array


def _encoder_input(eeg_signal, dropped, data_norm, data_clip):
    # eeg_eval.make_batch_iterator: divide, then clamp; EEGProcessor.process: zero dropped tokens.
    signal = eeg_signal / data_norm
    if data_clip is not None:
        signal = signal.clamp(min=-data_clip, max=data_clip)
    signal = signal.clone()
    signal[dropped.reshape(-1)] = 0.0
    return signal


def run_zuna_011(fif_paths, out_dir):
    import torch
    from omegaconf import OmegaConf

    import zuna
    from zuna.preprocessing.batch import preprocessing as official_preprocessing
    from apps.AY2latent_bci.eeg_data import BCIDatasetArgs, EEGDataset_v2

    config_path = Path(zuna.__file__).parent / "inference/AY2l/lingua/apps/AY2latent_bci/configs/config_infer.yaml"
    yaml_data = OmegaConf.load(config_path)["data"]
    for fif in fif_paths:
        work = Path(tempfile.mkdtemp(prefix="zuna011_"))
        try:
            (work / "in").mkdir()
            shutil.copy(fif, work / "in" / Path(fif).name)
            with contextlib.redirect_stdout(io.StringIO()):
                results = official_preprocessing(input_dir=str(work / "in"), output_dir=str(work / "pt"))
            if not results or not results[0]["success"]:
                raise RuntimeError(f"official preprocessing failed on {fif}: {results}")
            args = OmegaConf.to_object(
                OmegaConf.merge(
                    OmegaConf.structured(BCIDatasetArgs()),
                    yaml_data,
                    {"data_dir": str(work / "pt"), "shuffle": False, "num_workers": 0},
                )
            )
            samples = [sample for batch in EEGDataset_v2(args) for sample in batch]
            samples.sort(key=lambda s: s["sample_idx"])
            tokens, tok_idx, dropped = [], [], []
            for sample in samples:
                dropped_tokens = sample["chan_dropout"].reshape(-1)
                encoder_input = _encoder_input(sample["eeg_signal"], dropped_tokens, args.data_norm, args.data_clip)
                tokens.append(encoder_input.numpy().astype(np.float32))
                tok_idx.append(torch.cat((sample["chan_pos_discrete"], sample["t_coarse"]), dim=1).numpy().astype(np.int64))
                dropped.append(dropped_tokens.numpy().astype(bool))
            reversibility = samples[0]["metadata"]["reversibility"]
            out = dict(
                ch_names=np.array(samples[0]["metadata"]["channel_names"]),
                global_mean=reversibility["global_mean"],
                global_std=reversibility["global_std"],
                final_mean=reversibility["final_mean"],
                final_std=reversibility["final_std"],
                use_coarse_time=args.use_coarse_time,
                n_bins=args.num_bins_discretize_xyz_chan_pos,
            )
            _stack_or_split(out, "tokens", tokens)
            _stack_or_split(out, "tok_idx", tok_idx)
            _stack_or_split(out, "token_mask", dropped)
            np.savez(Path(out_dir) / f"ZUNA_{Path(fif).stem}.npz", **out)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def run_zuna_116(fif_paths, out_dir, segment_seconds):
    import torch
    from omegaconf import OmegaConf

    import zuna
    from apps.AY2latent_bci.eeg_data import BCIDatasetArgs, EEGDataset_v4

    config_path = Path(zuna.__file__).parent / "inference/AY2l/lingua/apps/AY2latent_bci/configs/config_infer_fif.yaml"
    yaml_data = OmegaConf.load(config_path)["data"]
    for fif in fif_paths:
        for seconds in segment_seconds:
            work = Path(tempfile.mkdtemp(prefix="zuna116_"))
            try:
                # The overrides zuna.reconstruct_fif passes with its defaults.
                overrides = {
                    "data_dir": str(Path(fif).absolute()),
                    "v4_recon_save_fif": True,
                    "v4_recon_out_dir": str(work),
                    "v4_segment_sec": float(seconds),
                    "v4_montage": "standard_1020",
                    "v4_use_fif_annotations": True,
                    "v4_recon_annotate_infill": True,
                    "v4_recon_save_preprocessed": False,
                    "v4_bad_token_overlap": 0.0,
                    "v4_highpass_hz": 0.5,
                    "num_workers": 0,
                }
                args = OmegaConf.to_object(
                    OmegaConf.merge(OmegaConf.structured(BCIDatasetArgs()), yaml_data, overrides)
                )
                with contextlib.redirect_stdout(io.StringIO()):
                    segments = [segment for batch in EEGDataset_v4(args) for segment in batch]
                segments.sort(key=lambda s: s["seg_start"])
                tokens, tok_idx, dropped = [], [], []
                for segment in segments:
                    dropped_tokens = segment["token_dropout"].reshape(-1)
                    encoder_input = _encoder_input(segment["eeg_signal"], dropped_tokens, args.data_norm, args.data_clip)
                    tokens.append(encoder_input.numpy().astype(np.float32))
                    tok_idx.append(
                        torch.cat((segment["chan_pos_discrete"], segment["t_coarse"]), dim=1).numpy().astype(np.int64)
                    )
                    dropped.append(dropped_tokens.numpy().astype(bool))
                out = dict(
                    ch_names=np.array(segments[0]["channel_names"]),
                    seg_start=np.array([s["seg_start"] for s in segments]),
                    seg_mean=np.stack([s["seg_mean"].numpy() for s in segments]),
                    seg_std=np.stack([s["seg_std"].numpy() for s in segments]),
                    use_coarse_time=args.use_coarse_time,
                    n_bins=args.num_bins_discretize_xyz_chan_pos,
                    segment_sec=float(seconds),
                )
                for i, segment in enumerate(segments):
                    out[f"avg_ref_offset_{i}"] = segment["avg_ref_offset"].numpy()
                _stack_or_split(out, "tokens", tokens)
                _stack_or_split(out, "tok_idx", tok_idx)
                _stack_or_split(out, "token_mask", dropped)
                tag = f"{seconds:g}".replace(".", "p")
                np.savez(Path(out_dir) / f"ZUNA1.1_{Path(fif).stem}_seg{tag}.npz", **out)
            finally:
                shutil.rmtree(work, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the .npz files (created if missing)")
    parser.add_argument("--segment-sec", default="5", help="ZUNA1.1 segment lengths in seconds, comma-separated")
    parser.add_argument("fif", nargs="+", help=".fif recordings with a montage")
    args = parser.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    import zuna

    Path(args.out).mkdir(parents=True, exist_ok=True)
    version = zuna.__version__
    if version == "0.1.1":
        run_zuna_011(args.fif, args.out)
    elif version == "1.1.6":
        run_zuna_116(args.fif, args.out, [float(v) for v in args.segment_sec.split(",")])
    else:
        raise SystemExit(f"unsupported zuna version {version}; expected 0.1.1 or 1.1.6")
    print(json.dumps({"zuna": version, "files": sorted(p.name for p in Path(args.out).glob("*.npz"))}))


if __name__ == "__main__":
    sys.exit(main())
