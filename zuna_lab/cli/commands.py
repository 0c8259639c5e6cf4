"""The ``zuna-lab`` command line: embed, reconstruct, demo.

::

    zuna-lab embed FILE -o OUT.nc [--model SRC] [--device auto] [--segment-duration 5]
                   [--events annotations|stim|CHANNEL --event-id NAME[=CODE] ... --tmin S --tmax S]
    zuna-lab reconstruct FILE -o OUT.fif|.nc|.zarr|.safetensors [--bad-channels T7 O1]
             [--bad-segments 2.0:3.5 4:5:Fz] [--add-channels FCz] [--steps 50] [--cfg 1.0] [--seed 0]
    zuna-lab demo [--random-weights] [--output-dir zuna_lab_demo] [--overwrite]
    zuna-lab embed-many SOURCES... -o STUDY.zarr [--scheduler ADDRESS]      (zuna_lab.cli.study)
    zuna-lab reconstruct-many SOURCES... -o DIR [--scheduler ADDRESS]
    zuna-lab doctor FILE [--variant ZUNA1.1] [--fix OUT_raw.fif]             (the montage doctor)
    zuna-lab screen FILE [--apply OUT_raw.fif] [--estimators zuna spline]    (zuna_lab.cli.screen)

Progress goes to stderr, the summary to stdout. A problem with the input (a zuna_lab error:
missing file, unknown channel, unavailable weights, existing output, …) prints one line to
stderr and exits with status 2; outputs are written atomically, so a failed run leaves none.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import warnings
from pathlib import Path

from ..config import VERSION
from ..errors import WeightsUnavailableError, ZunaLabError, ZunaLabWarning
from .options import VERBOSE_HELP, UsageError, cli_verbose, float_option, int_option, segment
from .study import add_study_commands, cmd_embed_many, cmd_reconstruct_many
from .screen import add_screen_command, cmd_screen
from ..validation import (
    CFG_RANGE,
    MAX_STEPS,
    check_add_channels,
    check_names,
    check_segments,
    check_writable,
    resolve_bad_channels,
    resolve_segments,
)

PROG = "zuna-lab"
EMBED_SUFFIXES = (".nc", ".zarr", ".safetensors")
RECONSTRUCT_SUFFIXES = (".fif", ".nc", ".zarr", ".safetensors")
SAMPLE_NAME = "sample_synthetic_raw.fif"
DEMO_OUTPUTS = ("sample_repaired_raw.fif", "sample_reconstruction.nc", "sample_embedding.nc")
# The bundled sample's recipe (data/make_sample_recording.py), used when the data folder is not installed.
SAMPLE_PARAMETERS = dict(duration=120.0, sfreq=256.0, seed=0, line_freq=50.0)
RANDOM_BANNER = ("RANDOM WEIGHTS: this run uses a tiny randomly initialised model, not ZUNA; "
                 "every output is MEANINGLESS (a smoke test of the pipeline only).")


# ----------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``zuna-lab reconstruct: error: argument --steps: ...`` (status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help').\n")


def _add_model_options(parser):
    group = parser.add_argument_group("model")
    group.add_argument("--model", metavar="SRC", default=None,
                       help="Hugging Face repo id (Zyphra/ZUNA, Zyphra/ZUNA1.1) or a local checkpoint folder "
                            "(default: $ZUNA_LAB_MODEL, else Zyphra/ZUNA)")
    group.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N (default: auto)")
    group.add_argument("--dtype", choices=("fp32", "mixed", "fp16", "bf16"), default=None,
                       help="compute precision (default: mixed on a GPU — the encoder in fp16, the decoder in bf16 —, "
                            "bf16 on CPUs with native bf16, else fp32; mixed and fp16 are for GPUs only)")
    group.add_argument("--batch-size", type=int_option(1), default=None, metavar="N",
                       help="epochs per forward pass (default: from free GPU memory)")


def _add_common(parser):
    parser.add_argument("--segment-duration", type=float_option(0, low_inclusive=False), default=None, metavar="S",
                        help="epoch length in seconds: 5 for ZUNA, 0.5-30 for ZUNA1.1 (default 5)")
    parser.add_argument("--bad-channels", nargs="+", default=[], metavar="CH", help="channels to hide, e.g. T7 O1")
    parser.add_argument("--no-annotations", action="store_true", help="ignore BAD_ annotations in the recording")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    _add_model_options(parser)


def build_parser():
    parser = _Parser(
        prog=PROG, description="ZUNA EEG foundation model: embeddings, reconstruction and repair of EEG recordings.",
        epilog="Exit status: 0 success, 2 usage or input error (one line on stderr). "
               "Run 'zuna-lab COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("embed", help="embed a recording: one 32-d latent per channel and 0.125 s token",
                       description="Embed a recording with ZUNA and write the labelled result "
                                   "(epoch, channel, token, latent) to netCDF, zarr or safetensors.")
    p.add_argument("file", metavar="FILE", help="recording: any MNE-readable file (FIF, EDF, BDF, .vhdr, .set, ...) or CSV")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output: .nc, .zarr or .safetensors")
    events = p.add_argument_group("trials around events (instead of fixed segments)")
    events.add_argument("--events", metavar="SOURCE", default=None,
                        help="'annotations' (the file's annotations, BAD_/EDGE ones left out), 'stim' (MNE's "
                             "default stim channel) or a stim channel's name")
    events.add_argument("--event-id", nargs="+", default=None, metavar="NAME[=CODE]",
                        help="the events to keep: NAME=CODE for a stim channel, annotation descriptions for "
                             "'annotations' (default: every event)")
    events.add_argument("--tmin", type=float, default=None, metavar="S", help="trial start relative to the event (s)")
    events.add_argument("--tmax", type=float, default=None, metavar="S", help="trial end relative to the event (s)")
    _add_common(p)

    p = sub.add_parser("reconstruct", help="reconstruct, repair (infill) or upsample a recording",
                       description="Hide bad channels / segments / BAD_ annotations from ZUNA, let it infill them "
                                   "and write the result: .fif (a continuous recording, infilled spans annotated "
                                   "ZUNA_infilled), .nc / .zarr (all signals and the mask) or .safetensors.")
    p.add_argument("file", metavar="FILE", help="recording: any MNE-readable file or CSV")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output: .fif, .nc, .zarr or .safetensors")
    p.add_argument("--bad-segments", nargs="+", type=segment, default=[], metavar="START:STOP[:CH]",
                   help="time spans to infill, in seconds from the first sample, e.g. 2.0:3.5 or 4:5:Fz "
                        "(STOP inf: to the end)")
    p.add_argument("--add-channels", nargs="+", default=None, metavar="CH",
                   help="new electrodes (standard 10-05 names) to generate, e.g. FCz CPz")
    p.add_argument("--steps", type=int_option(1, MAX_STEPS), default=50,
                   help=f"sampler steps, 1-{MAX_STEPS} (default 50, as the official inference)")
    p.add_argument("--cfg", type=float_option(*CFG_RANGE), default=1.0,
                   help=f"classifier-free guidance, {CFG_RANGE[0]:g}-{CFG_RANGE[1]:g} (default 1.0 = off)")
    p.add_argument("--seed", type=int_option(0), default=0,
                   help="noise seed; the same seed gives the same result (default 0)")
    p.add_argument("--n-samples", type=int_option(1), default=1, metavar="N", help="draws per epoch (default 1)")
    p.add_argument("--kind", choices=("hybrid", "reconstruction", "original"), default=None,
                   help="signal written to .fif/.safetensors (default: hybrid for .fif, reconstruction for .safetensors)")
    _add_common(p)

    p = sub.add_parser("demo", help="reconstruct and embed the bundled synthetic sample end to end",
                       description="Run the main job on the bundled synthetic sample recording: reconstruct it with "
                                   "channel T7 hidden (repair), embed it, write the results and print a summary.")
    p.add_argument("--random-weights", action="store_true",
                   help="use a tiny random checkpoint instead of ZUNA (smoke test; outputs are meaningless); "
                        "also what happens, with a one-line notice, when the hub cannot be reached")
    p.add_argument("--output-dir", default="zuna_lab_demo", metavar="DIR",
                   help="where to write (default: zuna_lab_demo); existing results there are kept unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier demo in --output-dir")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="seconds of the sample to use (default: all 120 s on a GPU, 20 s on the CPU)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampler steps (default: 50 on a GPU, 10 on the CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_options(p)
    add_study_commands(sub)     # embed-many, reconstruct-many

    p = sub.add_parser("doctor", help="check a recording's channel names and positions for ZUNA (the montage doctor)",
                       description="Check every channel's name and position as ZUNA will see them: one line per "
                                   "problem, then the verdict; --fix writes a corrected copy. Exit status 0 when the "
                                   "check ran (whatever it found), 2 when the file cannot be read.")
    p.add_argument("file", metavar="FILE", help="recording: any MNE-readable file or CSV")
    p.add_argument("--model", metavar="SRC", default=None,
                   help="whose position bins to check: ZUNA (50 per axis, the default) or ZUNA1.1 (100), "
                        "a repo id (Zyphra/ZUNA1.1) or a local checkpoint folder")
    p.add_argument("--fix", metavar="OUT", default=None, help="write the corrected copy to OUT (.fif)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --fix output")
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    add_screen_command(sub)     # screen
    return parser


# ----------------------------------------------------------------------------- helpers
def _say(args, *lines):
    if not getattr(args, "quiet", False):
        print(*lines, sep="\n", file=sys.stderr, flush=True)


def _check_output(path, suffixes, overwrite):
    """Fail before any work if the output cannot be written."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"Output {str(path)!r} must end in {', '.join(suffixes)}.")
    # Missing or read-only folder, existing output, a folder where a file goes: all before any work.
    return check_writable(path, overwrite, flag="--overwrite", label="output ",
                          directory=None if path.suffix.lower() == ".zarr" else False)


def _load_model(args, source=None):
    from ..model.hub import default_source
    from ..api.loading import load_model

    source = source or args.model or default_source()
    _say(args, f"Loading model {source} ...")
    model = load_model(source, device=args.device, dtype=args.dtype)
    _say(args, f"Loaded {model.variant} ({model.n_parameters():,} parameters) on {model.device} in {model.precision}.")
    return model


def _write(ds, path, *, kind=None, overwrite=False, verbose=None):
    from ..io import write

    suffix = path.suffix.lower()
    if suffix == ".fif":
        from ..api.core import write_fif

        return write_fif(ds, path, kind=kind or "hybrid", overwrite=overwrite, verbose=verbose)
    if suffix == ".nc":
        return write.write_netcdf(ds, path, overwrite=overwrite)
    if suffix == ".zarr":
        return write.write_zarr(ds, path, overwrite=overwrite)
    if "variant" not in ds.attrs and "model_variant" in ds.attrs:
        # write_safetensors reads attrs["variant"]; embed/reconstruct results store it as "model_variant".
        ds = ds.assign_attrs(variant=ds.attrs["model_variant"])
    return write.write_safetensors(ds, path, kind=kind or "reconstruction", overwrite=overwrite)


def _describe_raw(raw):
    return f"{len(raw.ch_names)} channels, {raw.n_times / raw.info['sfreq']:.1f} s at {raw.info['sfreq']:g} Hz"


def _describe_model(model):
    return f"{model.variant} from {model.source} on {model.device} ({model.precision})"


def _table(rows):
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"  {key:<{width}}  {value}" for key, value in rows)


def _embedding_summary(emb):
    sizes = emb.embedding.sizes
    shape = " x ".join(f"{sizes[d]} {d}s" if d != "latent" else f"{sizes[d]} latents" for d in emb.embedding.dims)
    return f"{shape} ({int(emb['mask'].sum())} masked tokens)"


def _reconstruction_summary(rec):
    sizes = rec["reconstruction"].sizes
    dims = [f"{sizes[d]} {d}s" for d in rec["reconstruction"].dims if d != "time"] + [f"{sizes['time']} samples"]
    mask = rec["mask"]
    names = [str(c) for c in rec["channel"].values]
    whole = mask.all(["epoch", "token"]).values
    partial = mask.sum(["epoch", "token"]).values * ~whole
    parts = []
    if whole.any():
        parts.append(", ".join(n for n, w in zip(names, whole) if w) + " entirely")
    if partial.any():
        parts.append(f"{int(partial.sum())} tokens on {int((partial > 0).sum())} channels (segments, annotations)")
    added = [str(c) for c in rec["channel"].values[rec["added"].values]] if "added" in rec.coords else []
    return " x ".join(dims), "; ".join(parts) or "nothing", ", ".join(added) or "none"


# ----------------------------------------------------------------------------- commands
def cmd_embed(args):
    from ..api.core import embed
    from ..io.read import read_raw

    out = _check_output(args.output, EMBED_SUFFIXES, args.overwrite)
    check_names(args.bad_channels, "--bad-channels")
    verbose = cli_verbose(args)
    events, event_id = _read_events(args)
    raw = read_raw(args.file, verbose=verbose)
    resolve_bad_channels(args.bad_channels, raw, "--bad-channels")   # before a slow model load
    model = _load_model(args)
    start = time.perf_counter()
    emb = embed(raw, model=model, events=events, event_id=event_id, tmin=args.tmin, tmax=args.tmax,
                segment_duration=args.segment_duration, bad_channels=args.bad_channels,
                use_annotations=not args.no_annotations, batch_size=args.batch_size,
                progress=not args.quiet, verbose=verbose)
    emb.attrs["source_file"] = str(Path(args.file))
    elapsed = time.perf_counter() - start
    path = _write(emb, out, overwrite=args.overwrite)
    if not args.quiet:
        print(f"{PROG} embed: {args.file} -> {path}")
        print(_table([("recording", _describe_raw(raw)), ("model", _describe_model(model)),
                      ("embedding", _embedding_summary(emb)), ("time", f"{elapsed:.1f} s"),
                      ("wrote", str(Path(path).resolve()))]))
    return 0


def _read_events(args):
    """(events, event_id) of ``--events`` from the file itself (its stim channel or annotations, which
    zuna_lab.read_raw does not keep), or (None, None)."""
    import mne

    if args.events is None:
        if args.event_id or args.tmin is not None or args.tmax is not None:
            raise UsageError("--event-id, --tmin and --tmax go with --events (annotations, stim or a stim channel).")
        return None, None
    if args.tmin is None or args.tmax is None:
        raise UsageError("--events needs --tmin and --tmax: the trial around each event in seconds.")
    source = mne.io.read_raw(args.file, preload=False, verbose="error")
    if args.events == "annotations":
        events, ids = mne.events_from_annotations(source, verbose="error")
        names = args.event_id or list(ids)
        unknown = [name for name in names if name not in ids]
        if unknown or not len(events):
            raise UsageError(f"The file has no annotation {unknown or 'to use as an event'}; its descriptions are "
                             f"{sorted(ids)}.")
        return events, {name: ids[name] for name in names}
    stim = None if args.events == "stim" else args.events
    if stim is not None and stim not in source.ch_names:
        raise UsageError(f"--events {stim!r} is not a channel of the file; pass 'annotations', 'stim' or a stim channel.")
    try:
        events = mne.find_events(source, stim_channel=stim, verbose="error")
    except ValueError as err:
        raise UsageError(f"No events found ({err}); pass --events annotations or the stim channel's name.") from None
    if not args.event_id:
        return events, None
    try:
        pairs = [item.split("=") for item in args.event_id]
        return events, {name: int(code) for name, code in pairs}
    except ValueError:
        raise UsageError(f"--event-id takes NAME=CODE pairs for a stim channel, e.g. left=1 right=2; got "
                         f"{' '.join(args.event_id)}.") from None


def cmd_reconstruct(args):
    from ..api.core import reconstruct
    from ..pipeline.masks import added_channels
    from ..io.read import read_raw

    out = _check_output(args.output, RECONSTRUCT_SUFFIXES, args.overwrite)
    if args.kind == "original" and out.suffix.lower() in (".nc", ".zarr"):
        raise UsageError("--kind applies to .fif and .safetensors outputs; .nc and .zarr hold every signal.")
    check_names(args.bad_channels, "--bad-channels")
    check_segments(args.bad_segments, "--bad-segments")
    add_channels = check_add_channels(args.add_channels, "--add-channels")
    verbose = cli_verbose(args)
    raw = read_raw(args.file, verbose=verbose)
    # Everything that needs the recording, before a slow model load.
    resolve_bad_channels(args.bad_channels, raw, "--bad-channels")
    resolve_segments(args.bad_segments, raw.ch_names, raw.n_times / raw.info["sfreq"], "--bad-segments")
    added_channels(raw, add_channels)
    model = _load_model(args)
    start = time.perf_counter()
    rec = reconstruct(raw, model=model, steps=args.steps, cfg=args.cfg, seed=args.seed,
                      bad_channels=args.bad_channels, bad_segments=args.bad_segments,
                      use_annotations=not args.no_annotations, add_channels=args.add_channels,
                      n_samples=args.n_samples, segment_duration=args.segment_duration,
                      batch_size=args.batch_size, progress=not args.quiet, verbose=verbose)
    rec.attrs["source_file"] = str(Path(args.file))
    elapsed = time.perf_counter() - start
    path = _write(rec, out, kind=args.kind, overwrite=args.overwrite, verbose=verbose)
    if not args.quiet:
        shape, infilled, added = _reconstruction_summary(rec)
        print(f"{PROG} reconstruct: {args.file} -> {path}")
        print(_table([("recording", _describe_raw(raw)), ("model", _describe_model(model)),
                      ("result", shape), ("infilled", infilled), ("added", added),
                      ("sampler", f"{args.steps} steps, cfg {args.cfg:g}, seed {rec.attrs.get('seed')}"),
                      ("time", f"{elapsed:.1f} s"), ("wrote", str(Path(path).resolve()))]))
    return 0


def _sample_recording(verbose):
    """The bundled sample (repository checkout), or the same recording regenerated from its recipe."""
    from ..io.read import read_raw

    path = Path(__file__).resolve().parents[1] / "data" / SAMPLE_NAME
    if path.is_file():
        return read_raw(path, verbose=verbose), str(path)
    from ..synthetic import make_synthetic_raw

    return read_raw(make_synthetic_raw(**SAMPLE_PARAMETERS, verbose=verbose), verbose=verbose), \
        f"{SAMPLE_NAME} (regenerated from seed {SAMPLE_PARAMETERS['seed']})"


def _demo_outputs(outdir, overwrite):
    """The demo's output paths; before any work, refuse to replace an earlier demo's results."""
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"--output-dir {str(outdir)!r} is a file; pass a folder (it is created if missing).")
    paths = [outdir / name for name in DEMO_OUTPUTS]
    existing = [path.name for path in paths if path.exists()]
    if existing and not overwrite:
        raise UsageError(f"{str(outdir)!r} already holds {', '.join(existing)} from an earlier demo; pass --overwrite "
                          f"to replace them or --output-dir DIR to write elsewhere.")
    return paths


def _demo_model(args, stack):
    """The demo's model and whether it is random: --random-weights, or the default weights, or random
    weights with a one-line notice when the default weights cannot come from the hub."""
    from ..testing import make_random_checkpoint

    random_weights = args.random_weights
    if not random_weights:
        try:
            return _load_model(args), False
        except WeightsUnavailableError as err:
            reason = getattr(err, "hub_unreachable", None)
            if args.model is not None or reason is None:    # weights the user named, or an unknown repo
                raise
            from ..model.hub import default_source

            print(f"{PROG} demo: the Hugging Face hub cannot be reached ({reason}) and {default_source()} is not "
                  f"cached, so the demo runs on RANDOM weights (outputs meaningless); for ZUNA itself pass "
                  f"--model /path/to/ZUNA or set ZUNA_LAB_MODEL.", file=sys.stderr, flush=True)
            random_weights = True
    print(f"*** {RANDOM_BANNER} ***", file=sys.stderr, flush=True)
    scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="zuna_lab_random_"))
    return _load_model(args, str(make_random_checkpoint(Path(scratch) / "random_ZUNA", variant="ZUNA"))), True


def cmd_demo(args):
    from ..api.core import embed, reconstruct, to_raw, write_fif
    from ..io.write import write_netcdf

    outdir = Path(args.output_dir).expanduser()
    verbose = "error"
    if args.duration is not None and not args.duration > 0:
        raise UsageError(f"--duration must be a positive number of seconds, got {args.duration:g}.")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be a positive integer, got {args.steps}.")
    outputs = _demo_outputs(outdir, args.overwrite)
    with contextlib.ExitStack() as stack:
        model, random_weights = _demo_model(args, stack)
    on_gpu = model.device.type == "cuda"
    duration = args.duration if args.duration is not None else (120.0 if on_gpu else 20.0)
    steps = args.steps if args.steps is not None else (50 if on_gpu else 10)
    raw, sample_name = _sample_recording(verbose)
    raw.crop(0, min(duration, raw.times[-1]))
    if not on_gpu and (args.duration is None or args.steps is None):
        _say(args, f"On the CPU the demo uses the first {duration:g} s and {steps} sampler steps to finish quickly; "
                   f"'--duration 120 --steps 50' runs it in full.")
    start = time.perf_counter()
    rec = reconstruct(raw, model=model, bad_channels=["T7"], steps=steps, seed=0, progress=not args.quiet,
                      verbose=verbose)
    t_rec = time.perf_counter() - start
    start = time.perf_counter()
    emb = embed(raw, model=model, progress=not args.quiet, verbose=verbose)
    t_emb = time.perf_counter() - start
    note = RANDOM_BANNER if random_weights else ""
    for ds in (rec, emb):
        ds.attrs["source_file"] = sample_name
        if note:
            ds.attrs["warning"] = note
    fixed = to_raw(rec, kind="hybrid", raw=raw)
    if note:
        fixed.info["description"] = note
    outdir.mkdir(parents=True, exist_ok=True)        # only now: a refused run leaves no folder behind
    paths = [write_fif(fixed, outputs[0], overwrite=args.overwrite),
             write_netcdf(rec, outputs[1], overwrite=args.overwrite),
             write_netcdf(emb, outputs[2], overwrite=args.overwrite)]
    shape, infilled, _ = _reconstruction_summary(rec)
    if note:
        print(f"*** {RANDOM_BANNER} ***")
    print(f"{PROG} demo: reconstruct (T7 hidden and infilled) and embed the synthetic sample")
    print(_table([
        ("recording", f"{sample_name}: {_describe_raw(raw)}"),
        ("model", "RANDOM tiny model (outputs meaningless)" if note else _describe_model(model)),
        ("reconstruct", f"{shape}; infilled {infilled}; {steps} steps, seed 0; {t_rec:.1f} s"),
        ("embed", f"{_embedding_summary(emb)}; {t_emb:.1f} s"),
        ("epochs", f"{rec.sizes['epoch']} of {rec.sizes['time'] / float(rec.attrs.get('sfreq', 256.0)):g} s"),
        ("wrote", str(paths[0].resolve())),
        *[("", str(path.resolve())) for path in paths[1:]],
    ]))
    print("Next: open tutorials/01_quickstart.ipynb, or load the results with xarray.open_dataset / mne.io.read_raw_fif.")
    return 0


def cmd_doctor(args):
    from ..api.core import write_fif
    from ..trust.doctor import check_montage

    out = _check_output(args.fix, (".fif",), args.overwrite) if args.fix is not None else None   # --fix "": refused
    report = check_montage(args.file, model=args.model, fix=out is not None, verbose=cli_verbose(args))
    for line in [*report.problems, report.verdict, *[f"fixed: {fix}" for fix in report.fixes]]:
        print(f"{PROG} doctor: {line}")
    if out is not None:
        print(f"{PROG} doctor: wrote {Path(write_fif(report.fixed, out, overwrite=args.overwrite)).resolve()}")
    return 0


COMMANDS = {"embed": cmd_embed, "reconstruct": cmd_reconstruct, "demo": cmd_demo,
            "embed-many": cmd_embed_many, "reconstruct-many": cmd_reconstruct_many, "doctor": cmd_doctor,
            "screen": cmd_screen}


@contextlib.contextmanager
def _mne_log_on_stderr():
    """MNE's log lines (shown with --verbose) on stderr beside the progress: stdout holds the summary alone."""
    import logging

    from mne.utils import logger as mne_logger

    handlers = list(mne_logger.handlers)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("%(message)s"))
    for handler in handlers:
        mne_logger.removeHandler(handler)
    mne_logger.addHandler(stderr)
    try:
        yield
    finally:
        mne_logger.removeHandler(stderr)
        for handler in handlers:
            mne_logger.addHandler(handler)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def main(argv=None):
    """Entry point of ``zuna-lab``; returns the exit status (0 success, 2 usage or input error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:   # --help, --version, argparse usage errors (status 2)
        return exit_.code if isinstance(exit_.code, int) else 2
    with warnings.catch_warnings(), _mne_log_on_stderr():
        warnings.showwarning = _show_warning
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*[Mm]ontage name")
        warnings.simplefilter("always", ZunaLabWarning)
        try:
            return COMMANDS[args.command](args)
        except WeightsUnavailableError as err:
            print(f"{PROG} {args.command}: error: {err} On the command line: --model /path/to/ZUNA.", file=sys.stderr)
            return 2
        except ZunaLabError as err:
            print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted; no output was written.", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
