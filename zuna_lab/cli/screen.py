"""The ``zuna-lab screen`` command (registered by :mod:`zuna_lab.cli.commands`).

::

    zuna-lab screen FILE [--apply OUT_raw.fif] [--estimators zuna spline] [--compare pyprep lof | none]
                    [--groups N] [--threshold 4] [--bad-channels T7] [--model SRC] [--steps 50] [--seed 0]

Prints one line per suggested bad channel (with its reason), the suggested ``BAD_screen``
segments and the other detectors' verdicts; ``--apply`` writes the recording (every channel)
with the suggested channels added to ``info["bads"]`` and the segments as annotations, nothing
else changed, atomically, as FIF. Exit status 0 when the screening ran (whatever it found), 2 for
a usage or input error (one line, before any work).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from .options import VERBOSE_HELP, UsageError, cli_verbose, float_option, int_option, segment

__all__ = ["add_screen_command", "cmd_screen"]

PROG = "zuna-lab"


def add_screen_command(sub):
    """Add ``screen`` to the ``zuna-lab`` subparsers ``sub``."""
    from ..validation import MAX_STEPS

    p = sub.add_parser("screen", help="suggest bad channels and bad segments: what the other channels cannot predict",
                       description="Hold out each channel, predict it from the others with ZUNA and with spherical "
                                   "splines, and suggest the channels and stretches poorly predicted (zl.screen). "
                                   "--apply writes the recording with the suggestions added. Exit status 0 when the "
                                   "screening ran, 2 for a usage or input error.")
    p.add_argument("file", metavar="FILE", help="recording: any MNE-readable file (FIF, EDF, BDF, .vhdr, .set, ...) or CSV")
    p.add_argument("--apply", metavar="OUT", default=None,
                   help="write the recording with the suggested bad channels (info['bads']) and BAD_screen annotations "
                        "added, nothing else changed, to OUT (.fif)")
    p.add_argument("--estimators", nargs="+", choices=("zuna", "spline"), default=["zuna", "spline"], metavar="NAME",
                   help="predictors to run, the first decides: zuna and/or spline (default: zuna spline)")
    p.add_argument("--compare", nargs="+", choices=("pyprep", "lof", "none"), default=["pyprep", "lof"], metavar="NAME",
                   help="other detectors to run beside: pyprep, lof, or none (default: pyprep lof)")
    p.add_argument("--groups", type=int_option(2), default=None, metavar="N",
                   help="hold out N spread-out groups of channels instead of each channel alone (N ZUNA reconstructions)")
    p.add_argument("--threshold", type=float_option(0, low_inclusive=False), default=4.0, metavar="Z",
                   help="robust z-score above which an epoch of a channel is bad (default 4)")
    p.add_argument("--bad-fraction", type=float_option(0, 1, low_inclusive=False), default=0.5, metavar="F",
                   help="share of its epochs that must be bad for a channel to be suggested (default 0.5)")
    p.add_argument("--segment-threshold", type=float_option(0, low_inclusive=False), default=6.0, metavar="Z",
                   help="robust z-score of a window's error above which it is a bad segment (default 6)")
    p.add_argument("--bad-channels", nargs="+", default=None, metavar="CH", help="channels already known bad")
    p.add_argument("--bad-segments", nargs="+", type=segment, default=None, metavar="START:STOP[:CH]",
                   help="spans already known bad, in seconds (e.g. 2.0:3.5 10:12:Fz)")
    p.add_argument("--segment-duration", type=float_option(0, low_inclusive=False), default=None, metavar="S",
                   help="epoch length in seconds: 5 for ZUNA, 0.5-30 for ZUNA1.1 (default 5)")
    p.add_argument("--steps", type=int_option(1, MAX_STEPS), default=50, help="ZUNA's sampler steps (default 50)")
    p.add_argument("--seed", type=int_option(0), default=0, help="seeds ZUNA's noise and pyprep's RANSAC (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --apply output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    group = p.add_argument_group("model")
    group.add_argument("--model", metavar="SRC", default=None,
                       help="Hugging Face repo id or a local checkpoint folder (default: $ZUNA_LAB_MODEL, else Zyphra/ZUNA)")
    group.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N (default: auto)")
    group.add_argument("--dtype", choices=("fp32", "mixed", "fp16", "bf16"), default=None, help="compute precision")
    group.add_argument("--batch-size", type=int_option(1), default=None, metavar="N", help="epochs per forward pass")


def _output(args):
    """The --apply target, checked before any work (suffix, folder, existing file)."""
    from ..validation import check_writable

    if args.apply is None:
        return None
    path = Path(args.apply).expanduser()
    if path.suffix.lower() != ".fif":
        raise UsageError(f"--apply output {str(path)!r} must end in .fif (the recording is written as FIF).")
    return check_writable(path, args.overwrite, flag="--overwrite", label="--apply output ", directory=False)


def _compare(args):
    if "none" in args.compare:
        if len(args.compare) > 1:
            raise UsageError("--compare none runs no other detector; leave out the others or 'none'.")
        return ()
    return tuple(dict.fromkeys(args.compare))


def _full_recording(path, verbose):
    """Every channel of the file (what --apply writes back), or read_raw's EEG for a CSV."""
    from ..io.read import read_raw, read_recording_file

    if Path(path).suffix.lower() in (".csv", ".tsv"):
        return read_raw(path, verbose=verbose)
    return read_recording_file(path, verbose=verbose)


def _summary(report):
    lines = [f"{name}: {report.reasons[name]}" for name in report.bad_channels]
    by_channel = {}
    for start, stop, channel in report.segments:
        by_channel.setdefault(channel, []).append(f"{start:g}-{stop:g} s")
    lines += [f"BAD_screen on {channel}: {', '.join(spans)}" for channel, spans in by_channel.items()]
    for column in ("pyprep", "lof"):
        if column in report.table:
            values = dict(zip(report.table["channel"], report.table[column].astype(str)))
            states = set(values.values())
            flagged = [f"{c} ({v})" if column == "pyprep" else c for c, v in values.items() if v]
            if len(states) == 1 and (states.pop() or "").startswith(("not installed", "failed")):
                flagged = [next(iter(values.values()))]
            lines.append(f"{column}: {', '.join(flagged) if flagged else 'nothing flagged'}")
    verdict = (f"{len(report.bad_channels)} bad channel(s) and {len(report.segments)} bad segment(s) suggested "
               f"({report.decided_by} decides)" if report.bad_channels or report.segments
               else f"nothing suggested ({report.decided_by} decides)")
    if report.scores.attrs.get("model_random"):
        verdict += "; ZUNA ran with RANDOM weights: its verdict is meaningless"
    return lines + [verdict]


def cmd_screen(args):
    import warnings

    from ..errors import ZunaLabWarning
    from ..io.export import save_fif
    from ..io.read import read_raw
    from ..trust.screen import screen
    from ..validation import check_names, resolve_bad_channels, resolve_segments

    out = _output(args)
    compare = _compare(args)
    check_names(args.bad_channels, "--bad-channels")
    verbose = cli_verbose(args)
    raw = read_raw(args.file, verbose=verbose)                  # its warnings: once, here
    resolve_bad_channels(args.bad_channels, raw, "--bad-channels")      # before a slow model load
    resolve_segments(args.bad_segments, raw.ch_names, raw.n_times / raw.info["sfreq"], "--bad-segments")
    model = None
    if "zuna" in args.estimators:
        from ..api.loading import load_model
        from ..model.hub import default_source

        source = args.model or default_source()
        if not args.quiet:
            print(f"Loading model {source} ...", file=sys.stderr, flush=True)
        model = load_model(source, device=args.device, dtype=args.dtype)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZunaLabWarning)         # said above
        report = screen(raw, model=model, estimators=tuple(dict.fromkeys(args.estimators)), compare=compare,
                        groups=args.groups, threshold=args.threshold, bad_fraction=args.bad_fraction,
                        segment_threshold=args.segment_threshold, bad_channels=args.bad_channels,
                        bad_segments=args.bad_segments, steps=args.steps, seed=args.seed,
                        segment_duration=args.segment_duration, batch_size=args.batch_size,
                        progress=not args.quiet, verbose=verbose)
    for line in _summary(report):
        print(f"{PROG} screen: {line}")
    if out is not None:
        fixed = report.apply(_full_recording(args.file, verbose), verbose=verbose)
        print(f"{PROG} screen: wrote {Path(save_fif(fixed, out, overwrite=args.overwrite, verbose=verbose)).resolve()}")
    if not args.quiet:
        print(f"Screened in {time.perf_counter() - start:.1f} s.", file=sys.stderr)
    return 0
