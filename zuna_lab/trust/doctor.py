"""The montage doctor: what zuna_lab makes of a recording's channel names and positions, and what is still wrong.

:func:`check_montage` looks at every channel of a recording before :func:`zuna_lab.read_raw`
fills in positions: names (10-05, cleaned, unrecognised, bipolar, non-EEG names typed EEG),
positions (missing or NaN, outside ZUNA's ±0.12 m grid, millimetres or centimetres taken for
metres, a device frame instead of the MNE head frame) and ZUNA's position bins (channels the
model sees at one place). ``fix=True`` returns a corrected copy; the input is never changed.
:func:`montage_warning` is the one-sentence summary :func:`zuna_lab.read_raw` warns with.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ZunaTypeError, preview
from ..io import read
from ..logs import logger, verbose
from ..io.diagnosis import check_variant, diagnose, montage_warning, repair, verdict

__all__ = ["check_montage", "MontageReport", "montage_warning"]


@dataclass(frozen=True, eq=False)
class MontageReport:
    """What :func:`check_montage` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per channel of the input: ``channel``, ``type``, ``standard`` (the 10-05 name it
        maps to, or ""), ``name`` (recognised / cleaned / bipolar / unrecognised / not EEG),
        ``note`` (how the name was read), ``position`` (file / standard / none: where the position
        ZUNA gets comes from), ``x``, ``y``, ``z`` (that position, m, head frame), ``status`` (ok /
        cleaned / problem / dropped / not EEG), ``issue`` (codes), ``problem`` (one sentence, ""
        where none) and ``fix`` (what ``fix=True`` does).
    verdict : str
        One line.
    fixed : mne.io.Raw | None
        With ``fix=True``, the corrected copy; else None.
    fixes : tuple of str
        What the corrected copy changed.
    variant : str
        The model variant whose position bins were checked.
    remaining : int
        Problems the corrected copy still has (with ``fix=True``).
    """

    table: object
    verdict: str
    fixed: object = None
    fixes: tuple = ()
    variant: str = "ZUNA"
    remaining: int = 0

    @property
    def ok(self):
        """True when no channel has a problem."""
        return not self.table["problem"].astype(bool).any()

    @property
    def problems(self):
        """One line per distinct problem: the channels that have it, then the sentence."""
        groups = {}
        for name, problem in zip(self.table["channel"], self.table["problem"]):
            if problem:
                groups.setdefault(problem, []).append(str(name))
        return [f"{preview(names)}: {problem}" for problem, names in groups.items()]

    def __repr__(self):
        lines = [f"MontageReport ({self.variant}): {self.verdict}", *[f"  {line}" for line in self.problems]]
        lines += [f"  fixed: {fix}" for fix in self.fixes]
        return "\n".join(lines)

    def _repr_html_(self):
        import html

        fixes = "".join(f"<li>{html.escape(fix)}</li>" for fix in self.fixes)
        return (f"<p><b>{html.escape(self.verdict)}</b></p>" + (f"<ul>{fixes}</ul>" if fixes else "")
                + self.table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4f}"))


@verbose
def check_montage(data, *, model=None, fix=False, montage="standard_1005", sfreq=None, ch_names=None, verbose=None):
    """Check a recording's channel names and positions for ZUNA, say what is wrong, and repair what can be.

    Parameters
    ----------
    data : path-like | mne.io.Raw | ndarray
        A recording as :func:`zuna_lab.read_raw` takes it, checked as it is — before read_raw
        looks positions up by name. Never modified.
    model : ZunaModel | str | None
        Whose position bins to check: ZUNA's 50 per axis or ZUNA1.1's 100. A loaded model, a
        variant name (``"ZUNA"``, ``"ZUNA1.1"``) or a source as in :func:`zuna_lab.embed`
        (``"Zyphra/ZUNA1.1"`` is read from its name; another source is loaded, once, as embed
        loads it). None checks ZUNA's, the coarser (channels apart at 50 bins are apart at 100).
    fix : bool
        Return a corrected copy in ``report.fixed``: non-EEG names get their type; positions
        scaled to metres, moved into the head frame by a rigid fit to the standard cap, missing
        or unusable ones taken from the standard cap (then for every recognised channel, as read_raw
        does); channels without a usable position and repeated electrodes dropped. What cannot be
        repaired (e.g. two distinct electrodes in one bin) stays in the verdict.
    montage : str
        The standard montage names are matched against (as in :func:`zuna_lab.read_raw`).
    sfreq, ch_names : float, list of str
        For a NumPy array (as in read_raw).
    verbose : bool | str | int | None
        MNE verbosity.

    Returns
    -------
    report : MontageReport
        ``report.table`` (one row per channel), ``report.verdict`` (one line), ``report.fixed``.

    Examples
    --------
    >>> report = zl.check_montage("subject01.edf", fix=True)     # doctest: +SKIP
    >>> report.verdict                                           # doctest: +SKIP
    >>> report.table.query("problem != ''")                      # doctest: +SKIP
    >>> rec = zl.reconstruct(report.fixed, bad_channels=["T7"])  # doctest: +SKIP
    """
    if not isinstance(fix, (bool, np.bool_)):
        raise ZunaTypeError(f"fix must be True or False, got {fix!r}.")
    if not isinstance(montage, str):
        raise ZunaTypeError(f"montage must be the name of a standard montage, got {type(montage).__name__}.")
    read.check_montage_name(montage)
    variant = _variant_of(model)
    raw = read.load_source(data, sfreq=sfreq, ch_names=ch_names, verbose=verbose)    # as it is: no montage yet
    diagnosis = diagnose(raw, variant, montage)
    fixed, fixes, remaining = None, (), 0
    if fix:
        fixed, fixes = repair(raw, diagnosis, montage, verbose)
        remaining = int(diagnose(fixed, variant, montage).table["problem"].astype(bool).sum())
    report = MontageReport(table=diagnosis.table, verdict=verdict(diagnosis, fix, fixes, remaining), fixed=fixed,
                           fixes=tuple(fixes), variant=variant, remaining=remaining)
    logger.info("check_montage: %s (%s's position bins)", report.verdict, variant)
    return report


def _variant_of(model):
    """The variant whose bins to check: a model's, a variant name (or a hub id ending in one), else the loaded source's."""
    from pathlib import Path, PurePosixPath

    from ..api.cache import get_model
    from ..config import VARIANTS

    if model is None or getattr(model, "variant", None) is not None:
        return check_variant(model)
    if isinstance(model, str) and not Path(model).expanduser().exists():
        name = PurePosixPath(model).name
        return name if name in VARIANTS and "/" in model else check_variant(model)   # "Zyphra/ZUNA1.1", "ZUNA1.1"
    return get_model(model).variant      # a checkpoint folder or another source: loaded (and cached) as embed does


