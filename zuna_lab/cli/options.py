"""Argument types and the usage error shared by the command modules (:mod:`.commands`, :mod:`.study`)."""
import argparse
import math

from ..errors import ZunaValueError


class UsageError(ZunaValueError):
    """A command-line argument that is well-formed for argparse but unusable."""


def segment(text):
    """``START:STOP`` or ``START:STOP:CHANNEL`` (seconds; STOP may be ``inf``: to the end) -> tuple."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"{text!r} is not START:STOP or START:STOP:CHANNEL (seconds), e.g. 2.0:3.5")
    try:
        start, stop = float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: START and STOP must be numbers of seconds, e.g. 2.0:3.5") from None
    if not math.isfinite(start) or math.isnan(stop):
        raise argparse.ArgumentTypeError(f"{text!r}: START must be a finite number of seconds and STOP a number "
                                         "(inf: to the end), e.g. 2.0:3.5")
    if len(parts) == 3 and not parts[2].strip():
        raise argparse.ArgumentTypeError(f"{text!r} ends in ':' without a channel; write START:STOP or START:STOP:CH")
    return (start, stop) if len(parts) == 2 else (start, stop, parts[2])


def int_option(minimum, maximum=None):
    """An argparse type: an integer in [minimum, maximum]."""
    describe = (f"an integer from {minimum} to {maximum}" if maximum is not None else
                "a positive integer" if minimum == 1 else "a non-negative integer" if minimum == 0 else
                f"an integer of at least {minimum}")

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {describe}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {describe}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def float_option(low, high=None, low_inclusive=True):
    """An argparse type: a finite number in the range (low exclusive when not low_inclusive)."""
    describe = (f"a number from {low:g} to {high:g}" if high is not None and low_inclusive else
                f"a number above {low:g} and at most {high:g}" if high is not None else
                "a positive number" if low == 0 and not low_inclusive else f"a number of at least {low:g}")

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {describe}, got {text!r}") from None
        too_low = value < low if low_inclusive else value <= low
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {describe}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


#: The help of every command's ``--verbose``.
VERBOSE_HELP = "log what each step did (zuna_lab's and MNE's messages at info level)"


def cli_verbose(args):
    """The ``verbose`` a command passes on: "info" with --verbose, else "error" (a command prints its own summary)."""
    return "info" if getattr(args, "verbose", False) else "error"
