"""Schema-conforming stand-ins for ``embed`` / ``reconstruct`` results (DESIGN.md "Result schema"), and a small Raw.

Used by the plot and health tests, which check drawing and statistics on known data; the
dashboard's state is tested against the real library (tests/viz/test_state.py).  They follow the
schema exactly:

embed:       embedding (epoch, channel, token, latent) float32, mask (epoch, channel, token) bool;
             coords channel, ch_x/ch_y/ch_z (channel) m, epoch_start (epoch) s,
             token_time (token) s, latent 0..31.
reconstruct: original/reconstruction/hybrid (epoch, channel, time) V, mask (epoch, channel, token),
             coords as above + time (s within the epoch) + added (channel) bool;
             optional sample dim with a ``spread`` variable.
"""

from __future__ import annotations

import functools

import numpy as np
import xarray as xr

SFREQ = 256.0
TOKEN_SAMPLES = 32
TOKEN_S = TOKEN_SAMPLES / SFREQ  # 0.125 s
EPOCH_S = 5.0
CHANNELS = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "T7", "T8", "P3", "P4", "O1", "O2"]


@functools.lru_cache(maxsize=8)
def _positions(channels):
    import mne

    info = mne.create_info(list(channels), SFREQ, "eeg")
    raw = mne.io.RawArray(np.zeros((len(channels), 10)), info, verbose="error")
    raw.set_montage("standard_1020", on_missing="ignore", verbose="error")
    return np.array([raw.info["chs"][i]["loc"][:3] for i in range(len(channels))])


def _position_coords(pos):
    return {name: ("channel", pos[:, axis]) for axis, name in enumerate(("ch_x", "ch_y", "ch_z"))}


def _coords(channels, n_epochs, n_tokens):
    channels = tuple(channels)
    return {
        "channel": list(channels),
        **_position_coords(_positions(channels)),
        "epoch_start": ("epoch", np.arange(n_epochs) * EPOCH_S),
        "token_time": ("token", np.arange(n_tokens) * TOKEN_S),
    }


def make_embedding(*, n_epochs=3, channels=CHANNELS, n_tokens=40, n_latent=32, seed=0,
                   shift=None, scale=None, masked_channels=(), mask_value=None):
    """An embed-like Dataset whose visible latents are N(0, I) (then shifted/scaled per dim).

    shift, scale: dict latent -> value (added / multiplied).  Masked tokens get
    ``mask_value`` (default: a large offset, so tests notice if they leak in).
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_epochs, len(channels), n_tokens, n_latent))
    for d, v in (scale or {}).items():
        z[..., d] *= v
    for d, v in (shift or {}).items():
        z[..., d] += v
    mask = np.zeros((n_epochs, len(channels), n_tokens), bool)
    for ch in masked_channels:
        mask[:, list(channels).index(ch), :] = True
    z[mask] = 25.0 if mask_value is None else mask_value
    ds = xr.Dataset(
        {
            "embedding": (("epoch", "channel", "token", "latent"), z.astype(np.float32)),
            "mask": (("epoch", "channel", "token"), mask),
        },
        coords={**_coords(channels, n_epochs, n_tokens), "latent": np.arange(n_latent)},
        attrs={"model_source": "test", "model_variant": "ZUNA", "sfreq": SFREQ},
    )
    return ds


def make_reconstruction(*, n_epochs=2, channels=CHANNELS, seed=0, masked_channels=("C3",),
                        noise=0.2, n_samples=1, added=()):
    """A reconstruct-like Dataset: 10 Hz-ish sinusoids + noise in volts; the 'reconstruction'
    is the original plus ``noise`` relative error; ``hybrid`` = original outside the mask."""
    rng = np.random.default_rng(seed)
    n_t = int(EPOCH_S * SFREQ)
    n_tok = n_t // TOKEN_SAMPLES
    t = np.arange(n_t) / SFREQ
    amp = 20e-6
    freqs = 8 + rng.random(len(channels)) * 4
    orig = amp * np.sin(2 * np.pi * freqs[None, :, None] * t[None, None, :] + rng.random((n_epochs, len(channels), 1)) * 6)
    orig = orig + 3e-6 * rng.standard_normal(orig.shape)
    mask = np.zeros((n_epochs, len(channels), n_tok), bool)
    for ch in masked_channels:
        mask[:, list(channels).index(ch), :] = True
    tmask = np.repeat(mask, TOKEN_SAMPLES, axis=-1)
    dims = ("epoch", "channel", "time")
    data = {"original": (dims, orig), "mask": (("epoch", "channel", "token"), mask)}
    if n_samples > 1:
        recs = orig[None] + noise * amp * rng.standard_normal((n_samples,) + orig.shape)
        hyb = np.where(tmask[None], recs, orig[None])
        data["reconstruction"] = (("sample",) + dims, recs)
        data["hybrid"] = (("sample",) + dims, hyb)
        data["spread"] = (dims, recs.std(axis=0))
    else:
        rec = orig + noise * amp * rng.standard_normal(orig.shape)
        data["reconstruction"] = (dims, rec)
        data["hybrid"] = (dims, np.where(tmask, rec, orig))
    ds = xr.Dataset(
        data,
        coords={**_coords(channels, n_epochs, n_tok), "time": t,
                "added": ("channel", np.isin(channels, list(added)))},
        attrs={"model_source": "test", "model_variant": "ZUNA", "sfreq": SFREQ},
    )
    for v in ("original", "reconstruction", "hybrid"):
        ds[v].attrs["units"] = "V"
    return ds


def make_raw(*, channels=CHANNELS, duration=15.0, seed=0):
    """A small mne RawArray (volts, standard_1020 montage)."""
    import mne

    rng = np.random.default_rng(seed)
    n = int(duration * SFREQ)
    t = np.arange(n) / SFREQ
    data = 20e-6 * np.sin(2 * np.pi * (8 + rng.random((len(channels), 1)) * 4) * t) + 3e-6 * rng.standard_normal((len(channels), n))
    info = mne.create_info(list(channels), SFREQ, "eeg")
    raw = mne.io.RawArray(data, info, verbose="error")
    raw.set_montage("standard_1020", on_missing="ignore", verbose="error")
    return raw


# ---------------------------------------------------------------------------------------------- BIDS
#: The recordings of :func:`make_bids_dataset`: id -> (format, channels, seconds).
BIDS_RECORDINGS = {
    "sub-01_ses-a_task-rest_run-01": ("BrainVision", 14, 9.0),
    "sub-01_ses-b_task-rest_run-01": ("EDF", 12, 7.0),
    "sub-02_ses-a_task-rest_run-01": ("EDF", 12, 8.0),
    "sub-02_ses-a_task-oddball_run-01": ("BrainVision", 12, 10.0),
    "sub-03_ses-a_task-rest_run-01": ("FIF", 12, 6.0),
    "sub-04_ses-a_task-rest_run-02": ("EEGLAB", 12, 7.5),
    "sub-05_ses-a_task-rest_run-01": ("EDF", 12, 6.0),      # made corrupt (cut in half) after writing
}
BIDS_BAD = ("sub-01_ses-a_task-rest_run-01", "T7")          # marked bad in channels.tsv only
BIDS_MOVED = ("sub-01_ses-a", "C3", np.array([0.012, 0.0, 0.0]))   # electrodes.tsv: 12 mm off the standard cap
BIDS_GROUPS = {"01": "patient", "02": "control", "03": "patient", "04": "control", "05": "control"}


def make_bids_dataset(root):
    """A small BIDS dataset written with mne-bids: 5 subjects, 2 sessions of sub-01, 2 tasks of
    sub-02, recordings in BrainVision, EDF, EEGLAB and FIF (placed by hand: mne-bids writes EEG
    only in the first three), one channel marked bad in ``channels.tsv`` (not in the file), one
    electrode measured 12 mm off its standard position, ``participants.tsv`` with a ``group``
    column, and sub-05's EDF cut in half. Returns the root."""
    import warnings
    from pathlib import Path

    import mne
    import mne_bids
    import pandas as pd

    from zuna_lab.synthetic import make_synthetic_raw

    root = Path(root)
    names = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "Fz", "Cz", "T7", "T8"]
    for number, (rec_id, (fmt, n_channels, seconds)) in enumerate(BIDS_RECORDINGS.items()):
        entities = dict(part.split("-") for part in rec_id.split("_"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = make_synthetic_raw(duration=seconds, ch_names=names[:n_channels], seed=number, verbose=False)
            montage = raw.get_montage().get_positions()
            ch_pos = dict(montage["ch_pos"])
            if f"sub-{entities['sub']}_ses-{entities['ses']}" == BIDS_MOVED[0]:
                ch_pos[BIDS_MOVED[1]] = ch_pos[BIDS_MOVED[1]] + BIDS_MOVED[2]
            raw.set_montage(mne.channels.make_dig_montage(
                ch_pos=ch_pos, nasion=montage["nasion"], lpa=montage["lpa"], rpa=montage["rpa"], coord_frame="head"))
            raw.info["line_freq"] = 50.0
            raw.info["subject_info"] = {"his_id": entities["sub"], "sex": 1 + number % 2}
            if entities["task"] == "oddball":
                raw.set_annotations(mne.Annotations([1.0, 2.5, 4.0, 5.5], [0.0] * 4,
                                                    ["standard", "target", "standard", "target"]))
            bids_path = mne_bids.BIDSPath(subject=entities["sub"], session=entities["ses"], task=entities["task"],
                                          run=entities["run"], datatype="eeg", root=root)
            mne_bids.write_raw_bids(raw, bids_path, format="BrainVision" if fmt == "FIF" else fmt,
                                    allow_preload=True, overwrite=True, verbose="error")
        folder = bids_path.directory
        if fmt == "FIF":        # the same recording as FIF, in place of its BrainVision files
            for suffix in (".vhdr", ".vmrk", ".eeg"):
                (folder / f"{rec_id}_eeg{suffix}").unlink()
            raw.save(folder / f"{rec_id}_eeg.fif", verbose="error")
            scans = folder.parent / f"sub-{entities['sub']}_ses-{entities['ses']}_scans.tsv"
            scans.write_text(scans.read_text().replace(f"{rec_id}_eeg.vhdr", f"{rec_id}_eeg.fif"))
        if rec_id == BIDS_BAD[0]:   # the lab marks a channel bad in channels.tsv afterwards
            table = folder / f"{rec_id}_channels.tsv"
            channels = pd.read_csv(table, sep="\t", keep_default_na=False)
            channels.loc[channels.name == BIDS_BAD[1], "status"] = "bad"
            channels.loc[channels.name == BIDS_BAD[1], "status_description"] = "loose electrode"
            channels.to_csv(table, sep="\t", index=False)
    corrupt = root / "sub-05" / "ses-a" / "eeg" / "sub-05_ses-a_task-rest_run-01_eeg.edf"
    corrupt.write_bytes(corrupt.read_bytes()[: corrupt.stat().st_size // 2])
    participants = pd.read_csv(root / "participants.tsv", sep="\t", keep_default_na=False)
    participants["group"] = [BIDS_GROUPS[p.split("-")[1]] for p in participants.participant_id]
    participants["age"] = [30 + 3 * i for i in range(len(participants))]
    participants.to_csv(root / "participants.tsv", sep="\t", index=False)
    return root
