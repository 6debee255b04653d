"""argparse ``type=`` converters shared by the subcommands: a bad value becomes argparse's
one-line error and exit status 2."""

import argparse

__all__ = ["positive_int", "cli_float", "parse_shape", "shape"]


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def cli_float(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def parse_shape(text):
    """ "65536x1000" -> (65536, 1000); "16777216" -> (16777216,).  ValueError when malformed."""
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"invalid shape {text!r}: expected positive integers joined by 'x', "
            f"e.g. 65536x1000 or 16777216"
        ) from None
    if not shape or any(n < 1 for n in shape):
        raise ValueError(f"invalid shape {text!r}: every dimension must be >= 1")
    return shape


def shape(text):
    try:
        return parse_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
