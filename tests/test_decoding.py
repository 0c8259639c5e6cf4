"""zuna_lab.decoding: ZunaEmbedder in scikit-learn pipelines."""
import pickle

import mne
import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn") if not __import__("os").environ.get("ZUNA_LAB_REQUIRE_DEPS") else __import__("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

import zuna_lab  # noqa: E402
from zuna_lab.decoding import ZunaEmbedder, cache_info, clear_cache  # noqa: E402
from zuna_lab.errors import ZunaTypeError, ZunaValueError  # noqa: E402
from zuna_lab.synthetic import make_synthetic_raw  # noqa: E402


@pytest.fixture(scope="module")
def source(random_checkpoint):
    return str(random_checkpoint("ZUNA1.1", seed=4))


@pytest.fixture(scope="module")
def epochs():
    raw = make_synthetic_raw(duration=30.0, seed=2)
    raw.filter(0.5, None, verbose="error")
    onsets = np.arange(20) * 1.3 + 1.0
    events = np.array([[int(t * 256), 0, 1 + i % 2] for i, t in enumerate(onsets)])
    return mne.Epochs(raw, events, {"a": 1, "b": 2}, tmin=-0.25, tmax=0.75, baseline=None, preload=True,
                      verbose="error")


def test_transform_gives_the_pooled_embedding_of_zl_embed(source, epochs):
    emb = zuna_lab.embed(epochs, source, progress=False)
    visible = emb.embedding.where(~emb.padding)
    expected = visible.mean(["channel", "token"]).values
    features = ZunaEmbedder(source).fit_transform(epochs)
    assert features.shape == (20, 32) and features.dtype == np.float32
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    per_channel = ZunaEmbedder(source, pool="channel").fit(epochs)
    np.testing.assert_allclose(per_channel.transform(epochs).reshape(20, -1, 32),
                               visible.mean("token").values, rtol=1e-5, atol=1e-6)
    names = per_channel.get_feature_names_out()
    assert names[0] == f"{emb.channel.values[0]}_latent0" and len(names) == emb.sizes["channel"] * 32
    timed = ZunaEmbedder(source, pool="time").fit(epochs)
    assert timed.get_feature_names_out()[0] == "t-0.250_latent0" and timed.n_features_out_ == emb.sizes["token"] * 32
    assert ZunaEmbedder(source, pool="flatten").fit_transform(epochs).shape == (20, emb.sizes["channel"] * emb.sizes["token"] * 32)


def test_arrays_with_info_equal_epochs(source, epochs):
    from_epochs = ZunaEmbedder(source).fit_transform(epochs)
    from_arrays = ZunaEmbedder(source, info=epochs.info, tmin=epochs.tmin).fit_transform(epochs.get_data())
    np.testing.assert_allclose(from_arrays, from_epochs, rtol=1e-6, atol=1e-7)


def test_clone_params_and_pickle(source, epochs):
    embedder = ZunaEmbedder(source, pool="channel", batch_size=4)
    copy = clone(embedder)
    assert copy.get_params() == embedder.get_params() and copy is not embedder
    assert copy.set_params(pool="mean").pool == "mean"
    loaded = zuna_lab.load_model(source, device="cpu")
    assert clone(ZunaEmbedder(loaded)).model is loaded          # a model object is shared, not copied
    fitted = ZunaEmbedder(source).fit(epochs)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.transform(epochs[:3]), fitted.transform(epochs[:3]))
    np.testing.assert_array_equal(again.get_feature_names_out(), fitted.get_feature_names_out())


def test_cross_validation_embeds_each_trial_once(source, epochs):
    clear_cache()
    pipe = make_pipeline(ZunaEmbedder(source), LogisticRegression(max_iter=200))
    scores = cross_val_score(pipe, epochs, epochs.events[:, 2], cv=5)
    assert scores.shape == (5,) and np.isfinite(scores).all()
    info = cache_info()
    assert info["misses"] == len(epochs) and info["hits"] >= 4 * len(epochs)   # 5 folds, 10 transforms


def test_bad_input_is_refused(source, epochs):
    with pytest.raises(ZunaValueError, match="Array trials need info="):
        ZunaEmbedder(source).fit(epochs.get_data())
    with pytest.raises(ZunaValueError, match="Array trials must be"):
        ZunaEmbedder(source, info=epochs.info).fit(epochs.get_data()[:, :3])
    with pytest.raises(ZunaTypeError, match="takes mne.Epochs or an array"):
        ZunaEmbedder(source).fit([[1, 2]])
    with pytest.raises(ZunaValueError, match="pool must be one of"):
        ZunaEmbedder(source, pool="max").fit(epochs)
    with pytest.raises(ZunaValueError, match="Call fit before"):
        ZunaEmbedder(source).get_feature_names_out()


def test_a_hidden_channel_gives_finite_features(source, epochs):
    """A bad channel is hidden from the encoder in every trial: its features are the latents the encoder
    inferred there (as an interpolated channel), never NaN, so the pipeline's classifier can use them."""
    bad = epochs.copy()
    bad.info["bads"] = [bad.ch_names[3]]
    features = ZunaEmbedder(source, pool="channel").fit_transform(bad)
    assert np.isfinite(features).all() and features.shape == (20, len(bad.ch_names) * 32)
