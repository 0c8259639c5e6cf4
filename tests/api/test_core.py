"""embed / reconstruct / to_raw end to end on real and synthetic recordings."""
from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import pytest

import zuna_lab
from zuna_lab.pipeline.seams import seam_correct
from zuna_lab.pipeline.results import channel_positions
from zuna_lab.errors import ZunaTypeError, ZunaValueError
from zuna_lab.synthetic import make_synthetic_raw

from oracle_support import sample_recordings

STEPS = 3


@pytest.fixture(scope="module", params=["ZUNA", "ZUNA1.1"])
def model(request, random_checkpoint):
    return zuna_lab.load_model(random_checkpoint(request.param, seed=2), device="cpu")


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic_raw(duration=20.0, seed=1)


@pytest.fixture(scope="module")
def sample1(tmp_path_factory):
    path = sample_recordings(tmp_path_factory.mktemp("samples"))["sample1_raw"]
    return mne.io.read_raw_fif(path, preload=True, verbose="error")


def test_embed_dataframe_is_tidy(model, sample1):
    emb = zuna_lab.embed(sample1, model=model)
    assert emb.embedding.dims == ("epoch", "channel", "token", "latent")
    assert emb.sizes["epoch"] == 3 and emb.sizes["token"] == 40 and emb.sizes["latent"] == 32
    assert list(emb.channel.values) == sample1.ch_names
    np.testing.assert_allclose(emb.token_time.values[:3], [0, 0.125, 0.25])
    np.testing.assert_allclose(emb.epoch_start.values, [0, 5, 10])
    df = emb.to_dataframe()
    assert isinstance(df, pd.DataFrame) and len(df) == 3 * 12 * 40 * 32
    assert list(df.index.names) == ["epoch", "channel", "token", "latent"]
    assert {"embedding", "mask", "ch_x", "ch_y", "ch_z", "token_time", "epoch_start"} <= set(df.columns)
    assert np.isfinite(df["embedding"]).all()
    # positions are the recording's head-frame electrode positions
    expected = np.array([ch["loc"][:3] for ch in sample1.info["chs"]])
    np.testing.assert_allclose(channel_positions(emb), expected, atol=1e-9)
    assert emb.attrs["model_variant"] == model.variant and emb.attrs["sfreq"] == 256.0


def test_embed_masks_bad_channels_and_annotations(model, synthetic):
    raw = synthetic.copy()
    raw.info["bads"] = ["T7"]
    raw.set_annotations(raw.annotations + mne.Annotations([6.0], [0.5], ["BAD_jump"], ch_names=[["O1"]],
                                                          orig_time=raw.annotations.orig_time))
    emb = zuna_lab.embed(raw, model=model)
    mask = emb.mask
    assert mask.sel(channel="T7").all()
    # 6.0-6.5 s lies in epoch 1 (5-10 s) at tokens 8..11 of O1 only
    o1 = mask.sel(channel="O1", epoch=1).values
    assert o1[8:12].all() and o1.sum() == 4
    assert mask.sum() == mask.sel(channel="T7").sum() + 4
    unmasked = zuna_lab.embed(raw, model=model, use_annotations=False)
    assert unmasked.mask.sel(channel="O1").sum() == 0
    assert not np.allclose(unmasked.embedding.sel(channel="O1", epoch=1), emb.embedding.sel(channel="O1", epoch=1))
    assert raw.info["bads"] == ["T7"]        # input not mutated


def test_reconstruct_seeded_and_hybrid(model, sample1):
    kwargs = dict(model=model, bad_channels=["F3"], bad_segments=[(6.0, 7.0), (11.0, 11.5, "O1")], steps=STEPS)
    a = zuna_lab.reconstruct(sample1, seed=3, **kwargs)
    b = zuna_lab.reconstruct(sample1, seed=3, **kwargs)
    c = zuna_lab.reconstruct(sample1, seed=4, **kwargs)
    assert a.reconstruction.identical(b.reconstruction)
    assert not np.allclose(a.reconstruction, c.reconstruction)
    mask = a.mask
    assert mask.sel(channel="F3").all()
    assert mask.sel(epoch=1).sum("channel").values[8:16].min() == len(sample1.ch_names)   # 6-7 s: all channels
    assert mask.sel(epoch=2, channel="O1").values[8:12].all()
    # hybrid = original on kept samples, infilled (seam-corrected) elsewhere
    sample_mask = np.repeat(mask.values, 32, axis=-1)
    np.testing.assert_array_equal(a.hybrid.values[~sample_mask], a.original.values[~sample_mask])
    assert not np.allclose(a.hybrid.values[sample_mask], a.original.values[sample_mask])
    # volts: original is the filtered EEG, reconstruction of the same order of magnitude
    assert 1e-7 < float(np.abs(a.original).max()) < 1e-3
    assert a.attrs["seed"] == 3 and a.attrs["steps"] == STEPS
    # batch size does not change the result (noise is drawn per epoch)
    d = zuna_lab.reconstruct(sample1, seed=3, batch_size=1, **kwargs)
    np.testing.assert_allclose(d.reconstruction, a.reconstruction, rtol=0, atol=1e-5 * float(np.abs(a.reconstruction).max()))


def test_n_samples_spread(model, synthetic):
    rec = zuna_lab.reconstruct(synthetic, model=model, bad_channels=["Pz"], steps=2, seed=0, n_samples=3)
    assert rec.reconstruction.dims == ("sample", "epoch", "channel", "time") and rec.sizes["sample"] == 3
    spread = rec.reconstruction_std
    assert float(spread.sel(channel="Pz").mean()) > 0
    np.testing.assert_allclose(spread, rec.reconstruction.std("sample", ddof=1))


def test_add_channels_by_name_and_count(model, synthetic):
    without_cz = synthetic.copy().drop_channels(["Cz"])
    rec = zuna_lab.reconstruct(without_cz, model=model, add_channels=["Cz"], steps=2, seed=0)
    assert rec.channel.values[-1] == "Cz" and bool(rec.added.sel(channel="Cz"))
    cz_true = synthetic.info["chs"][synthetic.ch_names.index("Cz")]["loc"][:3]
    np.testing.assert_allclose(channel_positions(rec)[-1], cz_true, atol=1e-6)   # head frame, not 4 cm off
    assert rec.mask.sel(channel="Cz").all()
    assert np.isfinite(rec.hybrid.sel(channel="Cz")).all()
    counted = zuna_lab.reconstruct(without_cz, model=model, add_channels=2, steps=2, seed=0)
    new = counted.channel.values[counted.added.values]
    assert len(new) == 2 and not set(new) & set(without_cz.ch_names)
    positions = channel_positions(counted)
    existing, added = positions[~counted.added.values], positions[counted.added.values]
    nearest = np.linalg.norm(added[:, None] - existing[None], axis=-1).min(axis=1)
    typical = np.sort(np.linalg.norm(existing[:, None] - existing[None], axis=-1), axis=1)[:, 1]
    assert nearest.min() > np.median(typical)       # placed in sparse parts of the cap


@pytest.mark.parametrize("fmt", ["fif", "edf", "brainvision"])
def test_round_trip_to_raw(model, synthetic, tmp_path, fmt):
    raw = synthetic.copy().crop(0, 10.0 - 1 / synthetic.info["sfreq"])
    raw.set_annotations(None)   # pybv refuses annotations that end past the cropped data
    if fmt == "fif":
        path = tmp_path / "rec_raw.fif"
        raw.save(path, verbose="error")
    else:
        path = tmp_path / ("rec.edf" if fmt == "edf" else "rec.vhdr")
        mne.export.export_raw(path, raw, fmt=fmt, verbose="error", overwrite=True)
    rec = zuna_lab.reconstruct(path, model=model, bad_channels=["O2"], steps=2, seed=1)
    source = mne.io.read_raw(path, preload=True, verbose="error")
    fixed = zuna_lab.to_raw(rec, kind="hybrid")       # the source file, found through rec.attrs
    assert fixed.ch_names == source.ch_names and fixed.info["sfreq"] == source.info["sfreq"]
    assert fixed.n_times == source.n_times and np.isfinite(fixed.get_data()).all()
    infilled = [a for a in fixed.annotations if a["description"] == "ZUNA_infilled"]
    assert infilled and all(a["ch_names"] == ("O2",) for a in infilled)
    assert (fixed.get_montage() is not None) == (source.get_montage() is not None)    # the file's positions, as they were
    others = [c for c in source.ch_names if c != "O2"]
    np.testing.assert_array_equal(fixed.get_data(picks=others), source.get_data(picks=others))
    o2 = source.ch_names.index("O2")
    assert not np.allclose(fixed.get_data()[o2], source.get_data()[o2])
    out = tmp_path / "fixed_raw.fif"
    zuna_lab.write_fif(fixed, out)
    back = mne.io.read_raw_fif(out, preload=True, verbose="error")
    np.testing.assert_allclose(back.get_data(), fixed.get_data(), rtol=1e-5, atol=1e-12)
    np.testing.assert_array_equal(zuna_lab.to_raw(rec, kind="original").get_data(), source.get_data())


def test_refusals(model, sample1):
    with pytest.raises(ZunaValueError, match="'Cz', which is not a channel of the recording; choose from Fp1"):
        zuna_lab.reconstruct(sample1, model=model, bad_channels=["Cz"], steps=1)
    with pytest.raises(ZunaValueError, match=r"\(start, stop\) or \(start, stop, channel\)"):
        zuna_lab.reconstruct(sample1, model=model, bad_segments=[(1.0,)], steps=1)
    with pytest.raises(ZunaValueError, match="0 <= start < stop"):
        zuna_lab.reconstruct(sample1, model=model, bad_segments=[(3.0, 2.0)], steps=1)
    with pytest.raises(ZunaValueError, match="starts after the recording ends"):
        zuna_lab.reconstruct(sample1, model=model, bad_segments=[(99.0, 100.0)], steps=1)
    with pytest.raises(ZunaValueError, match="n_samples must be a positive integer"):
        zuna_lab.reconstruct(sample1, model=model, n_samples=0)
    with pytest.raises(ZunaValueError, match=r"mask must have shape \(n_epochs, n_channels, n_tokens\) = \(3, 12, 40\)"):
        zuna_lab.embed(sample1, model=model, mask=np.zeros((1, 12, 40), bool))
    with pytest.raises(ZunaTypeError, match="boolean"):
        zuna_lab.embed(sample1, model=model, mask=np.zeros((3, 12, 40)))
    with pytest.raises(ZunaValueError, match="not in the standard 10-05 montage"):
        zuna_lab.reconstruct(sample1, model=model, add_channels=["XYZ1"], steps=1)
    with pytest.raises(ZunaValueError, match="already has"):
        zuna_lab.reconstruct(sample1, model=model, add_channels=["fp1"], steps=1)
    with pytest.raises(ZunaTypeError, match="model must be a ZunaModel"):
        zuna_lab.embed(sample1, model=3)


def test_seam_correct_ramp():
    t = np.arange(20.0)
    original = np.vstack([t, t, t])
    hybrid = original.copy()
    mask = np.zeros_like(original, bool)
    mask[0, 5:10] = True       # interior run: both ends re-anchored
    mask[1, 15:] = True        # run to the edge: constant shift
    mask[2, :] = True          # whole channel: untouched
    hybrid[mask] += 100.0
    fixed = seam_correct(hybrid, mask)
    np.testing.assert_allclose(fixed[0, 5], original[0, 4])
    np.testing.assert_allclose(fixed[0, 9], original[0, 10])
    np.testing.assert_allclose(fixed[1, 15], original[1, 14])
    np.testing.assert_allclose(fixed[2], hybrid[2])
    np.testing.assert_array_equal(fixed[~mask], original[~mask])


def test_callback_reports_every_sampler_step(model, synthetic):
    seen = []
    zuna_lab.reconstruct(synthetic.copy().crop(0, 10.0 - 1 / 256), model=model, bad_channels=["T7"], steps=3,
                         n_samples=2, seed=0, batch_size=1, callback=lambda done, total: seen.append((done, total)))
    # 2 epochs, one per batch, 2 samples each, 3 steps: 12 calls, counting up to the total
    assert len(seen) == 12 and seen[-1] == (12, 12)
    assert [done for done, _ in seen] == list(range(1, 13))


def test_embed_checks_the_samples_once_and_preprocess_alone_checks_them(model, synthetic, monkeypatch):
    """read_raw checks the samples (finite, plausible volts); embed's preprocessing does not pass over
    them a second time, while preprocess() on a Raw of the user's own still refuses bad samples."""
    from zuna_lab.errors import RecordingError
    from zuna_lab.io import quality, read
    from zuna_lab.pipeline import preprocessing

    calls = []
    real = quality.check_signal
    for module in (read, preprocessing):
        monkeypatch.setattr(module, "check_signal", lambda raw, **kw: calls.append(1) or real(raw, **kw))
    zuna_lab.embed(synthetic, model=model, progress=False)
    assert len(calls) == 1
    raw = zuna_lab.read_raw(synthetic)
    raw._data[0, 100] = np.nan
    with pytest.raises(RecordingError, match="NaN or Inf"):
        preprocessing.preprocess(raw, model.variant)


def _events(raw, seconds, codes):
    return np.array([[raw.first_samp + int(round(s * raw.info["sfreq"])), 0, c] for s, c in zip(seconds, codes)])


def test_embed_trials_on_the_fixed_grid_equal_the_fixed_segments(model, synthetic):
    """Events every 5 s from the start with [0, 5 s] windows are the fixed 5 s epochs: the trial path
    (continuous resample + high-pass, then per-trial normalisation) gives what the parity-tested
    fixed path gives — for ZUNA too, whose whole-recording z-score cancels in its second one."""
    raw = synthetic.copy().crop(0, 20, include_tmax=False)
    fixed = zuna_lab.embed(raw, model, progress=False)
    trials = zuna_lab.embed(raw, model, events=_events(raw, [0, 5, 10, 15], [1, 2, 1, 2]), tmin=0.0, tmax=5.0,
                            progress=False)
    assert trials.sizes == fixed.sizes and fixed.sizes["epoch"] == 4
    np.testing.assert_allclose(trials.embedding.values, fixed.embedding.values, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(trials.mask.values, fixed.mask.values)
    np.testing.assert_allclose(trials.epoch_start.values, [0, 5, 10, 15])


def test_embed_trials_equal_windows_cut_by_hand(model, synthetic):
    """Overlapping trials off the token grid: the embedding equals the model's latents of windows cut by
    hand from the high-passed recording and normalised by hand as the variant normalises an epoch."""
    from zuna_lab.pipeline.tokens import tokenize
    import torch

    raw = zuna_lab.read_raw(synthetic)
    events = _events(raw, [3.1, 4.02, 9.77], [1, 2, 1])
    tmin, tmax = (-0.3, 1.2) if model.variant == "ZUNA1.1" else (-1.0, 4.0)
    emb = zuna_lab.embed(raw, model, events=events, event_id={"a": 1, "b": 2}, tmin=tmin, tmax=tmax,
                         use_annotations=False, progress=False)
    filtered = mne.filter.filter_data(raw.get_data(), 256.0, 0.5, None, method="fir", verbose="error")
    first = int(np.floor(tmin / 0.125 + 1e-9)) * 32
    n = emb.sizes["token"] * 32
    starts = np.round((events[:, 0] - raw.first_samp) / 256.0 * 256).astype(int) + first
    trials = np.stack([filtered[:, s:s + n] for s in starts])
    referenced = trials - trials.mean(axis=1, keepdims=True)
    if model.variant == "ZUNA1.1":
        normalised = (referenced - referenced.mean(-1, keepdims=True)) / (referenced.std(-1, keepdims=True) + 1e-6)
    else:
        centred = referenced - referenced.mean(-1, keepdims=True)
        normalised = (centred - centred.mean()) / centred.std()
    inputs = np.clip(normalised / 10, -1, 1).astype(np.float32)
    positions = np.stack([emb[axis].values for axis in ("ch_x", "ch_y", "ch_z")], axis=1)
    tokens, tok_idx = tokenize(inputs, positions, variant=model.variant,
                               mask=np.zeros(inputs.shape[:2] + (n // 32,), bool))
    latents = model.encode(torch.from_numpy(tokens), torch.from_numpy(tok_idx)).numpy()
    from zuna_lab.pipeline.embedding import empty_grid, place_latents
    grid = empty_grid(3, inputs.shape[1], n // 32, latents.shape[-1])
    place_latents(grid, [0, 1, 2], latents, n // 32, model.variant)
    np.testing.assert_allclose(emb.embedding.values, grid, rtol=0, atol=1e-6)
    assert list(emb.event.values) == ["a", "b", "a"] and list(emb.event_code.values) == [1, 2, 1]
    np.testing.assert_allclose(emb.event_time.values, [3.1, 4.02, 9.77], atol=1 / 256)
    assert emb.token_time.values[0] == first / 256 and emb.attrs["segment_duration"] == n / 256
    frame = emb.to_dataframe()
    assert {"event", "event_code", "event_time"} <= set(frame.columns)
    assert frame.groupby("event").size().to_dict() == {"a": 2 * frame.shape[0] // 3, "b": frame.shape[0] // 3}


def test_embed_event_arguments_without_events_are_refused(model, synthetic):
    with pytest.raises(ZunaValueError, match="event_id, tmin and tmax go with events"):
        zuna_lab.embed(synthetic, model, tmin=-0.5, progress=False)
    with pytest.raises(ZunaValueError, match="segment_duration does not apply to event-locked trials"):
        zuna_lab.embed(synthetic, model, events=_events(synthetic, [3.0], [1]), tmin=0.0, tmax=5.0,
                       segment_duration=5.0, progress=False)


def _epochs(raw, events, tmin, tmax, **kwargs):
    return mne.Epochs(raw, events, {"a": 1, "b": 2}, tmin=tmin, tmax=tmax, baseline=None, preload=True,
                      verbose="error", **kwargs)


def test_embed_epochs_equal_the_raw_with_events(model, synthetic):
    """mne.Epochs cut from the recording high-passed as ZUNA does give what embedding the continuous
    recording with the same events gives; names, codes, times and metadata become coords."""
    import pandas as pd

    raw = zuna_lab.read_raw(synthetic)
    events = _events(raw, [3.1, 4.02, 9.77, 14.5], [1, 2, 1, 2])
    tmin, tmax = (-0.5, 1.5) if model.variant == "ZUNA1.1" else (-1.0, 4.0)
    filtered = raw.copy().filter(0.5, None, method="fir", verbose="error")
    metadata = pd.DataFrame({"rt": [0.31, 0.42, 0.53, 0.64], "event": ["w", "x", "y", "z"]})
    epochs = _epochs(filtered, events, tmin, tmax, metadata=metadata)
    from_epochs = zuna_lab.embed(epochs, model, progress=False)
    from_raw = zuna_lab.embed(raw, model, events=events, event_id={"a": 1, "b": 2}, tmin=tmin, tmax=tmax,
                              use_annotations=False, progress=False)
    np.testing.assert_allclose(from_epochs.embedding.values, from_raw.embedding.values, rtol=0, atol=1e-5)
    assert list(from_epochs.event.values) == ["a", "b", "a", "b"] and list(from_epochs.event_code.values) == [1, 2, 1, 2]
    np.testing.assert_allclose(from_epochs.event_time.values, from_raw.event_time.values)
    np.testing.assert_allclose(from_epochs.token_time.values, from_raw.token_time.values)
    np.testing.assert_allclose(from_epochs.rt.values, metadata.rt)
    assert list(from_epochs.metadata_event.values) == ["w", "x", "y", "z"]          # "event" was taken
    frame = from_epochs.to_dataframe()
    assert {"event", "event_code", "event_time", "rt", "metadata_event"} <= set(frame.columns)
    assert from_epochs.attrs["source_file"] == "mne.Epochs"


def test_embed_epochs_refusals_and_warning(model, synthetic):
    from zuna_lab.errors import ZunaLabWarning

    raw = zuna_lab.read_raw(synthetic)
    events = _events(raw, [3.1, 9.77], [1, 2])
    epochs = _epochs(raw, events, -0.5, 4.5)          # 0.5 Hz not applied before epoching
    if model.variant == "ZUNA1.1":
        with pytest.warns(ZunaLabWarning, match="high-passed at 0 Hz, below the 0.5 Hz"):
            zuna_lab.embed(epochs, model, progress=False)
        short = _epochs(raw, events, 0.0, 0.3)
        with pytest.raises(ZunaValueError, match="ZUNA1.1 takes trials of 0.5 to 30 s, and these hold 0.25 s"):
            zuna_lab.embed(short, model, progress=False)
    else:
        with pytest.raises(ZunaValueError, match="ZUNA takes trials of 5 s, and these hold 2 s.*ZUNA1.1"):
            zuna_lab.embed(_epochs(raw, events, -0.5, 1.5), model, progress=False)
    with pytest.raises(ZunaValueError, match="mne.Epochs hold their trials already"):
        zuna_lab.embed(epochs, model, tmin=0.0, progress=False)
    unplaced = epochs.copy().rename_channels({name: f"X{i}" for i, name in enumerate(epochs.ch_names)})
    unplaced.set_montage(None)
    with pytest.raises(zuna_lab.errors.RecordingError, match="position"):
        zuna_lab.embed(unplaced, model, progress=False)


def test_reconstruct_trials_repairs_each_trial_on_its_own(model, synthetic):
    """zl.reconstruct with events: one trial per event with its coords and times from the event; the
    hidden channel is infilled and seam-corrected within each trial (overlapping trials are fine), the
    rest of each trial is the original; the same trials as mne.Epochs give the same result; to_raw
    refuses to put overlapping trials back."""
    raw = zuna_lab.read_raw(synthetic)
    events = _events(raw, [3.1, 4.02, 9.77], [1, 2, 1])
    tmin, tmax = (-0.3, 1.2) if model.variant == "ZUNA1.1" else (-1.0, 4.0)
    rec = zuna_lab.reconstruct(raw, model, events=events, event_id={"a": 1, "b": 2}, tmin=tmin, tmax=tmax,
                               bad_channels=["T7"], steps=STEPS, seed=0, use_annotations=False, progress=False)
    assert rec.sizes["epoch"] == 3 and list(rec.event.values) == ["a", "b", "a"]
    assert float(rec.time[0]) == float(rec.token_time[0]) == np.floor(tmin / 0.125) * 0.125
    assert rec.mask.sel(channel="T7").all() and not rec.mask.drop_sel(channel="T7").any()
    kept = rec.drop_sel(channel="T7")
    np.testing.assert_array_equal(kept.hybrid.values, kept.original.values)
    t7 = rec.sel(channel="T7")
    assert np.isfinite(t7.hybrid.values).all() and not np.allclose(t7.hybrid.values, t7.original.values)
    # a whole hidden channel has no original neighbour: its infill is the reconstruction itself
    np.testing.assert_allclose(t7.hybrid.values, t7.reconstruction.values)
    with pytest.raises(ZunaValueError, match="trials around events, which may overlap"):
        zuna_lab.to_raw(rec)
    filtered = raw.copy().filter(0.5, None, method="fir", verbose="error")
    epochs = mne.Epochs(filtered, events, {"a": 1, "b": 2}, tmin=float(rec.time[0]), tmax=float(rec.time[-1]),
                        baseline=None, preload=True, verbose="error")
    from_epochs = zuna_lab.reconstruct(epochs, model, bad_channels=["T7"], steps=STEPS, seed=0, progress=False)
    np.testing.assert_allclose(from_epochs.hybrid.values, rec.hybrid.values, rtol=0, atol=1e-9)
    np.testing.assert_allclose(from_epochs.original.values, rec.original.values, rtol=0, atol=1e-12)
