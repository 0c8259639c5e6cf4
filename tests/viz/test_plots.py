import numpy as np
import pytest

import holoviews as hv

from zuna_lab.trust import health
from zuna_lab.errors import ZunaTypeError, ZunaValueError
from zuna_lab.viz import plots as zp
from builders import make_embedding, make_reconstruction


@pytest.fixture(scope="module")
def rec():
    return make_reconstruction(masked_channels=("C3", "T7"), added=("O2",))


@pytest.fixture(scope="module")
def emb():
    return make_embedding(n_epochs=2, masked_channels=["O1"])


@pytest.mark.parametrize("name,region", [
    ("Fp1", "frontal"), ("AF3", "frontal"), ("F7", "frontal"), ("FCz", "central"), ("Cz", "central"),
    ("CP4", "central"), ("T7", "temporal"), ("T3", "temporal"), ("FT9", "temporal"), ("TP10", "temporal"),
    ("P3", "parietal"), ("POz", "parietal"), ("O2", "occipital"), ("Iz", "occipital"),
    ("EEG Fp2-REF", "frontal"), ("eeg o1", "occipital"), ("EOG", "other"), ("Status", "other"),
])
def test_channel_region(name, region):
    assert zp.channel_region(name) == region


def test_minmax_downsample_keeps_extremes():
    t = np.arange(100_000) / 256
    y = np.random.default_rng(0).standard_normal((3, t.size))
    y[1, 54321] = 50.0
    t2, y2 = zp.minmax_downsample(t, y, 1000)
    assert t2.size <= 1000 and y2.shape == (3, t2.size)
    assert y2.max(axis=1).tolist() == y.max(axis=1).tolist()
    assert y2.min(axis=1).tolist() == y.min(axis=1).tolist()
    assert np.all(np.diff(t2) >= 0)
    t3, y3 = zp.minmax_downsample(t[:500], y[:, :500], 1000)
    assert t3.size == 500


def _elements(ov, typ):
    return [e for e in ov if isinstance(e, typ)]


def test_traces(rec):
    ov = zp.traces(rec, epoch=1, kinds=("original", "reconstruction", "hybrid"))
    paths = _elements(ov, hv.Path)
    assert [p.label for p in paths] == ["reconstruction", "hybrid", "original"]    # the original on top
    paths = paths[::-1]
    assert len(paths[0].data) == 12
    rects = _elements(ov, hv.Rectangles)[0]
    assert len(rects) == 2  # C3 and T7, each one merged span over the epoch
    # µV: channel Fp1 is drawn on top, its trace centred on its offset
    opts = hv.Store.lookup_options("bokeh", ov, "plot").kwargs
    ticks = opts["yticks"]
    assert ticks[0][1] == "Fp1" and ticks[-1][1] == "O2"
    y = paths[0].data[0][:, 1] - ticks[0][0]
    np.testing.assert_allclose(y, rec.original.isel(epoch=1).sel(channel="Fp1").values * 1e6, rtol=1e-9)
    # downsampling
    small = zp.traces(rec, channels=["F3", "F4"], max_points=200)
    assert len(_elements(small, hv.Path)[0].data) == 2
    assert _elements(small, hv.Path)[0].data[0].shape[0] <= 200
    hv.render(ov, backend="bokeh")


def test_traces_dataarray_and_pending_mask(rec):
    da = rec.original.isel(epoch=0)
    m = rec.mask.isel(epoch=0) & False
    m.loc[dict(channel="F4")] = True
    ov = zp.traces(da, mask=m)
    assert len(_elements(ov, hv.Rectangles)[0]) == 1
    with pytest.raises(ZunaValueError, match="epoch"):
        zp.traces(rec, epoch=7)
    with pytest.raises(ZunaValueError, match="Unknown channel"):
        zp.traces(rec, channels=["Nope"])
    with pytest.raises(ZunaTypeError):
        zp.traces(np.zeros((3, 3)))


def test_traces_with_samples():
    r = make_reconstruction(n_samples=3)
    ov = zp.traces(r, sample="mean")
    assert len(_elements(ov, hv.Path)) == 2


def test_scalp(rec):
    xy = zp.scalp_coords(rec)
    assert xy.dims == ("channel", "axis")
    # frontal electrodes up (+y), left hemisphere at -x, all near the unit circle or inside
    assert float(xy.sel(channel="Fp1", axis="y")) > 0.6 > float(xy.sel(channel="O1", axis="y")) + 1
    assert float(xy.sel(channel="C3", axis="x")) < 0 < float(xy.sel(channel="C4", axis="x"))
    assert np.all(np.hypot(xy.sel(axis="x"), xy.sel(axis="y")) < 1.15)
    ov = zp.scalp(rec, selected=["F3"])
    pts = _elements(ov, hv.Points)[0]
    df = pts.dframe().set_index("channel")
    assert df.loc["C3", "status"] == "masked" and df.loc["O2", "status"] == "added"
    assert df.loc["F4", "status"] == "visible" and df.loc["F3", "line"] == zp.COLORS["selected"]
    assert _elements(ov, hv.Labels)
    hv.render(ov, backend="bokeh")


def test_scalp_from_raw_and_dict():
    from builders import make_raw

    raw = make_raw(duration=2)
    ov = zp.scalp(raw, masked=["T8"])
    assert _elements(ov, hv.Points)[0].dframe().set_index("channel").loc["T8", "status"] == "masked"
    zp.scalp({"Cz": (0, 0.014, 0.137)})
    with pytest.raises(ZunaTypeError):
        zp.scalp(42)


def test_latent_plots(emb):
    ov = zp.latent_histogram(emb)
    hist = _elements(ov, hv.Histogram)[0]
    edges = hist.edges
    dens = hist.dimension_values(1)
    assert abs(np.sum(dens * np.diff(edges)) - 1) < 1e-6
    curve = _elements(ov, hv.Curve)[0]
    assert abs(curve.dimension_values(1).max() - 1 / np.sqrt(2 * np.pi)) < 1e-3
    # masked tokens (O1) are left out: n in the title
    n_vis = int((~emb.mask).sum()) * 32
    assert f"n={n_vis}" in hv.Store.lookup_options("bokeh", ov, "plot").kwargs["title"]
    zp.latent_histogram(emb, latent=[0, 1])
    h = health.mmd_health(make_embedding(scale={2: 0.0}), n_permutations=5)
    mo = zp.latent_moments(h)
    sc = _elements(mo, hv.Scatter)[0].dframe()
    assert sc.loc[sc.latent == 2, "color"].item() == zp.COLORS["masked"]
    zp.latent_moments(emb)
    hv.render(mo, backend="bokeh")
    cmp = health.compare_recordings({"a": emb, "b": make_embedding(seed=4)}, n_permutations=5)
    hv.render(zp.drift_matrix(cmp), backend="bokeh")


def test_embedding_map(emb):
    xy = zp.embedding_coords(emb, max_points=400)
    assert xy.sizes["point"] == 400 and set(xy.coords) >= {"epoch", "channel", "token", "time", "abs_time", "region"}
    assert 0 < sum(xy.attrs["explained_variance_ratio"]) < 1
    again = zp.embedding_coords(emb, max_points=400)
    np.testing.assert_array_equal(xy.x.values, again.x.values)
    for color_by in ("channel", "epoch", "time", "region"):
        pts = zp.embedding_map(xy, color_by=color_by)
        assert isinstance(pts, hv.Points)
        hv.render(pts, backend="bokeh")
    assert set(pts.dframe().region) <= set(zp.REGIONS)
    with pytest.raises(ZunaValueError):
        zp.embedding_map(emb, color_by="colour")
    try:
        import umap  # noqa: F401
    except ImportError:
        assert zp.embedding_coords(emb, method="auto", max_points=50).attrs["method"] == "pca"
        with pytest.raises(ZunaValueError, match="umap"):
            zp.embedding_coords(emb, method="umap")


def test_save_png(rec, emb, tmp_path):
    layout = zp.traces(rec) + zp.scalp(rec)
    for name, obj in {"traces": zp.traces(rec), "scalp": zp.scalp(rec), "layout": layout,
                      "map": zp.embedding_map(emb, max_points=200),
                      "hist": zp.latent_histogram(emb)}.items():
        p = zp.save_png(obj, tmp_path / name)
        assert p.suffix == ".png" and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    assert hv.Store.current_backend == "bokeh"
    with pytest.raises(ZunaTypeError):
        zp.save_png("not a plot", tmp_path / "x.png")


def _figure_size(obj):
    fig = hv.render(obj, backend="bokeh")
    return fig.width, fig.height, fig.sizing_mode


def test_latent_plots_have_fixed_readable_sizes(emb):
    """Fixed pixel sizes (no responsive collapse in a layout), data inside the axes."""
    h = health.mmd_health(emb, n_permutations=5)
    assert _figure_size(zp.latent_moments(h)) == (660, 320, "fixed")
    assert _figure_size(zp.latent_moments(h, width=500, height=250)) == (500, 250, "fixed")
    assert _figure_size(zp.latent_histogram(emb)) == (440, 320, "fixed")
    fig = hv.render(zp.latent_moments(h), backend="bokeh")
    lo, hi = fig.y_range.start, fig.y_range.end
    assert lo <= float((h["mean"] - h["std"]).min()) and hi >= float((h["mean"] + h["std"]).max())
    assert fig.x_range.start < 0 and fig.x_range.end > 31


def test_embedding_map_legend_fits_many_channels():
    names = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7", "P3", "Pz", "P4",
             "P8", "O1", "O2"]
    many = make_embedding(n_epochs=1, channels=tuple(names))
    fig = hv.render(zp.embedding_map(many, size=420), backend="bokeh")
    legend = fig.legend[0]
    # one legend row per channel (grouped by the channel field): 19 rows fit beside the frame
    assert legend.items[0].label.field and 19 * legend.label_height <= 420 - 100
    few = hv.render(zp.embedding_map(make_embedding(n_epochs=1), size=420), backend="bokeh")
    assert few.legend[0].label_height == "auto"    # 12 channels: the default legend


def test_traces_mask_label(rec):
    ov = zp.traces(rec, mask_label="selected")
    assert _elements(ov, hv.Rectangles)[0].label == "selected"


def _stream(source, kind):
    (stream,) = [s for s in hv.streams.Stream.registry[source] if isinstance(s, kind)]
    return stream


def _title(obj):
    return hv.Store.lookup_options("bokeh", obj, "plot").kwargs["title"]


def test_dashboard_tabs_compute_on_first_view():
    """Opening a tab computes what it shows (no empty axes waiting for a button); the views are
    functions of the state (DynamicMaps redrawn from its parameters) and their streams write the
    user's clicks and selections back into it; the embeddings' traces are the given recording's
    preprocessed epoch."""
    import asyncio

    import zuna_lab as zl
    from zuna_lab.testing import make_random_checkpoint
    from zuna_lab.viz import apps
    from zuna_lab.viz.projections import scalp_coords
    from builders import make_raw
    import tempfile

    model = zl.load_model(make_random_checkpoint(tempfile.mkdtemp(prefix="zl_dash_"), seed=5), device="cpu")
    raw = make_raw(duration=10.0)
    d = apps.dashboard(raw, model=model)
    assert d.tabs.dynamic
    rec, rs, hs, es = d.reconstruction, d.reconstruction.state, d.health.state, d.embeddings.state
    assert rs.ready and rs.n_epochs == 2 and hs.results == {} and es.embedding is None
    assert isinstance(rec.traces, hv.DynamicMap) and isinstance(rec.traces[()], hv.Overlay)
    assert "will be masked" in _title(rec.traces[()])
    # the scalp's Tap and the traces' BoundsX streams set the masks; the views follow the state
    tap = _stream(rec.scalp, hv.streams.Tap)
    tap.event(**dict(zip(("x", "y"), scalp_coords(raw).sel(channel="T7").values.tolist())))
    assert rs.masked_channels == ["T7"]
    scalp = _elements(rec.scalp[()], hv.Points)[0].dframe().set_index("channel")
    assert scalp.loc["T7", "status"] == "masked" and scalp.loc["T8", "status"] == "visible"
    bounds = _stream(rec.traces, hv.streams.BoundsX)
    bounds.event(boundsx=(1.0, 2.0))
    assert rs.masked_span == (1.0, 2.0) and rs.mask_request()["bad_segments"] == [(1.0, 2.0, "T7")]
    assert len(_elements(rec.traces[()], hv.Rectangles)[0]) == 1
    rs.epoch = 1
    assert _title(rec.traces[()]).startswith("epoch 1 (5.0–10.0 s)")
    asyncio.run(d.activate(1))                      # the health tab opens
    assert hs.complete and hs.status.startswith("done")
    emb = zl.embed(raw, model=model)
    np.testing.assert_array_equal(hs.embeddings["recording"].embedding.values, emb.embedding.values)
    assert d.health.moments.visible and isinstance(d.health.moments.object, hv.Overlay)
    asyncio.run(d.activate(2))                      # the embeddings tab opens: no second embedding
    ex = d.embeddings
    assert es.embedding is hs.embeddings["recording"] and isinstance(ex.map.object, hv.Points)
    title = _title(ex.traces.object)
    assert title.startswith("epoch 0 (0.0–5.0 s)") and "pass raw" not in title
    ex.selection.event(index=[0, 1])                # a selection on the map
    assert es.selection == [0, 1] and "selected tokens shaded" in _title(ex.traces.object)
    shown = set(_elements(ex.scalp.object, hv.Points)[0].dframe().query("line == @zp.COLORS['selected']").channel)
    assert shown == set(es.selected_channels)
