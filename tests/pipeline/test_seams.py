"""The streamed seam correction (issue N) equals seam_correct on the whole stitched recording."""
import numpy as np
import pytest

from zuna_lab.pipeline.seams import StreamedSeams, seam_correct


@pytest.mark.parametrize("seed", range(4))
def test_streamed_seams_equal_seam_correct_whatever_the_blocks(seed):
    rng = np.random.default_rng(seed)
    for trial in range(300):
        rows, n = 4, 200
        signal = rng.normal(size=(2, rows, n))            # two draws, one mask
        mask = np.zeros((rows, n), bool)
        for row in range(rows):
            for _ in range(rng.integers(0, 4)):
                begin = rng.integers(0, n)
                mask[row, begin:begin + rng.integers(1, 120)] = True
        if trial % 7 == 0:
            mask[1] = True                                 # a whole bad channel: left as it is
        tail = rng.integers(1, 20) if trial % 3 else 0      # samples no epoch covers: NaN, no neighbour
        if tail:
            signal[:, :, n - tail:] = np.nan
            mask[:, n - tail:] = False
        expected = np.stack([seam_correct(signal[k], mask) for k in range(2)])
        out, seams = signal.copy(), StreamedSeams(rows, 2)
        cuts = sorted({0, n, *[int(c) for c in rng.integers(1, n, rng.integers(0, 8))]})
        for begin, stop in zip(cuts[:-1], cuts[1:]):
            block = out[:, :, begin:stop].copy()
            fixes = seams.correct(begin, block, mask[:, begin:stop], final=stop == n)
            out[:, :, begin:stop] = block
            for row, first, last, add in fixes:              # runs that began in blocks already written
                assert last <= begin
                out[:, row, first:last] += add(np.arange(first, last))
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12, equal_nan=True)
