"""The ``zuna-lab embed-many`` / ``reconstruct-many`` commands (registered by :mod:`zuna_lab.cli.commands`).

::

    zuna-lab embed-many SOURCES... -o STUDY.zarr [--scheduler ADDRESS] [--model SRC] [--overwrite]
    zuna-lab embed-many BIDS_ROOT [--subjects 01 02] [--sessions a] [--tasks rest] [--runs 01]
    zuna-lab reconstruct-many SOURCES... -o DIR [--scheduler ADDRESS] [--bad-channels T7] [--steps 50] [--seed 0]

SOURCES are files, folders (searched recursively) or quoted globs, or the root of one BIDS
dataset (read through mne-bids; the output defaults to BIDS_ROOT/derivatives/zuna_lab). Without ``--scheduler`` a
local cluster sized to the machine runs the work (loopback only). Exit status: 0 when every
recording is done, 1 when some failed (listed on stderr, with their error), 2 for a usage or
input error (one line, before any work).
"""
from __future__ import annotations

import os
import sys
import time

from .options import VERBOSE_HELP, UsageError, cli_verbose, float_option, int_option, segment

__all__ = ["add_study_commands", "cmd_embed_many", "cmd_reconstruct_many"]


def add_study_commands(sub):
    """Add the two subcommands to the ``zuna-lab`` subparsers ``sub``."""
    from ..validation import CFG_RANGE, MAX_STEPS

    def common(p, output_help):
        p.add_argument("sources", nargs="+", metavar="SOURCES",
                       help="recording files, folders (searched recursively) or quoted globs such as 'data/**/*.edf'; "
                            "or the root of a BIDS dataset")
        p.add_argument("-o", "--output", default=None, metavar="OUT",
                       help=output_help + " (required, except for a BIDS dataset: BIDS_ROOT/derivatives/zuna_lab)")
        for entity, example in (("subjects", "01 02"), ("sessions", "a"), ("tasks", "rest"), ("runs", "01")):
            p.add_argument(f"--{entity}", nargs="+", default=None, metavar="LABEL",
                           help=f"BIDS only: the {entity} to process, e.g. --{entity} {example} (default: all)")
        p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="address of a running dask scheduler, e.g. tcp://10.0.0.5:8786 (default: start a local "
                            "cluster sized to this machine, loopback only)")
        p.add_argument("--model", metavar="SRC", default=None,
                       help="Hugging Face repo id or a local checkpoint folder, loaded once by each worker "
                            "(default: $ZUNA_LAB_MODEL, else Zyphra/ZUNA)")
        p.add_argument("--batch-size", type=int_option(1), default=None, metavar="N",
                       help="epochs per forward pass (default: from free GPU memory)")
        p.add_argument("--segment-duration", type=float_option(0, low_inclusive=False), default=None, metavar="S",
                       help="epoch length in seconds: 5 for ZUNA, 0.5-30 for ZUNA1.1 (default 5)")
        p.add_argument("--bad-channels", nargs="+", default=None, metavar="CH", help="channels to hide in every recording")
        p.add_argument("--no-annotations", action="store_true", help="ignore BAD_ annotations in the recordings")
        p.add_argument("--overwrite", action="store_true", help="start again: forget every recording done before")
        p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
        p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP + " (in the workers too)")

    p = sub.add_parser("embed-many", help="embed many recordings into one resumable zarr store (dask.distributed)",
                       description="Embed every recording into one zarr store: reading and preprocessing on CPU "
                                   "workers, encoding on GPU workers. A rerun skips the recordings already done from "
                                   "unchanged files; failures are listed in the store's index with their error.")
    common(p, "the study store, a folder ending in .zarr (created, or resumed)")

    p = sub.add_parser("reconstruct-many", help="repair many recordings: one FIF each (dask.distributed)",
                       description="Infill bad channels, BAD_ annotations and the given options in every recording "
                                   "and write DIR/<id>_repaired_raw.fif for each, atomically; a rerun skips those done.")
    common(p, "folder for the repaired FIF files (created if missing)")
    p.add_argument("--bad-segments", nargs="+", type=segment, default=None, metavar="START:STOP[:CH]",
                   help="time spans to infill in every recording, e.g. 2.0:3.5 or 4:5:Fz")
    p.add_argument("--steps", type=int_option(1, MAX_STEPS), default=50, help="sampler steps (default 50)")
    p.add_argument("--cfg", type=float_option(*CFG_RANGE), default=1.0, help="classifier-free guidance (default 1.0)")
    p.add_argument("--seed", type=int_option(0), default=0, help="noise seed (default 0)")
    p.add_argument("--n-samples", type=int_option(1), default=1, metavar="N", help="draws per epoch (default 1)")
    p.add_argument("--add-channels", nargs="+", default=None, metavar="CH",
                   help="new electrodes (standard 10-05 names) to generate in every recording, e.g. FCz CPz")
    p.add_argument("--kind", choices=("hybrid", "reconstruction", "original"), default="hybrid",
                   help="signal written (default: hybrid)")


def _client(args):
    if not args.scheduler:
        return None
    from distributed import Client
    from distributed.comm import parse_address
    from distributed.comm.registry import get_backend

    try:
        get_backend(parse_address(args.scheduler)[0])         # an unknown scheme: at once, not after the timeout
        # not the process default: a client that fails to connect would leave dask pointing at it
        return Client(args.scheduler, timeout=20, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise UsageError(f"Cannot reach the dask scheduler at {args.scheduler!r} ({' '.join(str(err).split())}); "
                          "check the address, or leave out --scheduler to run on this machine.") from None


def _sources(args):
    """One path as itself (a BIDS root is recognised alone), several as a list."""
    return args.sources[0] if len(args.sources) == 1 else list(args.sources)


def _filters(args):
    return dict(subjects=args.subjects, sessions=args.sessions, tasks=args.tasks, runs=args.runs)


def _options(args):
    options = dict(batch_size=args.batch_size, segment_duration=args.segment_duration,
                   use_annotations=not args.no_annotations)
    if args.bad_channels:
        options["bad_channels"] = list(args.bad_channels)
    return options


def _report(args, index, label, elapsed):
    failed = index[index.status == "failed"]
    for row in failed.itertuples():
        print(f"zuna-lab {label}: {row.recording} failed: {row.error}", file=sys.stderr)
    if not args.quiet:
        done = index[index.status == "done"]
        print(f"zuna-lab {label}: {len(done)} of {len(index)} recordings done, {len(failed)} failed "
              f"({done.seconds.sum() / 3600:.2f} recording-hours, {elapsed:.1f} s) -> "
              f"{_where(args)}")
    return 1 if len(failed) else 0


def _where(args):
    return args.output or os.path.join(args.sources[0], "derivatives", "zuna_lab")


def _interrupted(args, kind, label):
    """Ctrl-C during a study: say how many recordings the store kept (committed ones are never lost)."""
    from ..study.journal import read_index

    try:
        state = read_index(_where(args), kind)
    except Exception:      # noqa: BLE001 — a store that cannot be read must not hide the interruption
        state = None
    done = 0 if state is None else sum(row.get("status") == "done" for row in state.rows.values())
    print(f"zuna-lab {label}: interrupted; {done} recording(s) committed to {_where(args)} are kept — run the same "
          "command again to do the rest.", file=sys.stderr)
    return 130


def cmd_embed_many(args):
    from ..study.api import embed_many

    client, start = _client(args), time.perf_counter()
    try:
        index = embed_many(_sources(args), args.output, model=args.model, client=client, overwrite=args.overwrite,
                           **_filters(args),
                           progress=not args.quiet, verbose=cli_verbose(args), **_options(args))
    except KeyboardInterrupt:
        return _interrupted(args, "embeddings", "embed-many")
    finally:
        if client is not None:
            client.close()
    return _report(args, index, "embed-many", time.perf_counter() - start)


def cmd_reconstruct_many(args):
    from ..study.api import reconstruct_many

    options = _options(args)
    if args.bad_segments:
        options["bad_segments"] = list(args.bad_segments)
    if args.add_channels:
        options["add_channels"] = list(args.add_channels)
    client, start = _client(args), time.perf_counter()
    try:
        index = reconstruct_many(_sources(args), args.output, model=args.model, client=client, kind=args.kind,
                                 **_filters(args),
                                 overwrite=args.overwrite, progress=not args.quiet,
                                 verbose=cli_verbose(args), steps=args.steps, cfg=args.cfg, seed=args.seed,
                                 n_samples=args.n_samples, **options)
    except KeyboardInterrupt:
        return _interrupted(args, "reconstructions", "reconstruct-many")
    finally:
        if client is not None:
            client.close()
    return _report(args, index, "reconstruct-many", time.perf_counter() - start)
