"""pipeline.events: MNE events to event-locked windows of whole tokens at the model's rate."""
import numpy as np
import pytest

import zuna_lab
from zuna_lab.errors import RecordingError, ZunaTypeError, ZunaValueError
from zuna_lab.pipeline.events import event_trials
from zuna_lab.synthetic import make_synthetic_raw


@pytest.fixture(scope="module")
def raw():
    return zuna_lab.read_raw(make_synthetic_raw(duration=30.0, seed=1, sfreq=200.0))


def events_at(raw, seconds, codes):
    return np.array([[raw.first_samp + int(round(s * raw.info["sfreq"])), 0, c] for s, c in zip(seconds, codes)])


def test_windows_are_whole_tokens_with_the_event_on_a_token_boundary(raw):
    events = events_at(raw, [3.1, 7.3, 12.0, 3.6], [1, 2, 1, 3])
    trials = event_trials(raw, events, {"left": 1, "right": 2}, -0.3, 1.01, "ZUNA1.1")
    # -0.3 s widens to -0.375 (3 tokens before), 1.01 s to 1.125 (9 after): 12 tokens of 32 samples at 256 Hz
    assert trials.tmin == -0.375 and trials.n_samples == 12 * 32 and trials.sfreq == 256.0
    assert list(trials.name) == ["left", "right", "left"] and list(trials.code) == [1, 2, 1]     # code 3 not asked
    np.testing.assert_allclose(trials.time, [3.1, 7.3, 12.0])
    np.testing.assert_array_equal(trials.start, np.round(trials.time * 256).astype(int) - 3 * 32)
    everything = event_trials(raw, events, None, 0.0, 1.0, "ZUNA1.1")
    assert list(everything.name) == ["1", "2", "1", "3"]


def test_bad_event_arguments_are_refused_in_one_sentence(raw):
    events = events_at(raw, [3.1, 7.3], [1, 2])
    cases = [
        (ZunaValueError, "names codes that no event has", dict(event_id={"left": 1, "up": 4})),
        (ZunaTypeError, "event_id must be a dict", dict(event_id=["left"])),
        (ZunaTypeError, "events must be MNE's integer array", dict(events=np.zeros((2, 2), int))),
        (ZunaValueError, "tmax .* must be after tmin", dict(tmin=1.0, tmax=0.5)),
        (ZunaValueError, "takes trials of 0.5 to 30 s", dict(tmin=0.0, tmax=0.2)),
        (ZunaValueError, "ZUNA was trained on 5 s epochs only.*tmax = tmin \\+ 5", dict(variant="ZUNA")),
        (RecordingError, "1 of 2 event windows .* reach outside the recording", dict(tmin=-4.0, tmax=1.0)),
        (ZunaValueError, "events need tmin and tmax", dict(tmax=None)),
    ]
    for error, message, change in cases:
        arguments = dict(events=events, event_id={"left": 1, "right": 2}, tmin=-0.5, tmax=1.5, variant="ZUNA1.1")
        arguments.update(change)
        with pytest.raises(error, match=message):
            event_trials(raw, **arguments)
