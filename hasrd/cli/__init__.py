"""The ``hasrd`` command: ``encode`` audio to token files, ``decode`` them back, ``info`` on one,
``enhance`` noisy speech in a codec's latent space.
Continuous codecs (``Codec.continuous``) write ``.hsrl`` latent files instead (``encode --continuous``).

Usage is documented in ``docs/cli.md``. The rules every command follows:

* a problem with one input prints one line, ``hasrd: error: <file>: <problem>``, on stderr and
  the batch goes on with the next file; the exit code is 1 if any file failed, 2 for a usage
  error (bad option, unknown model), 0 otherwise;
* outputs are written to a temp name in the target folder and renamed into place, so a failed or
  interrupted run never leaves a partial output behind;
* several processes started by ``accelerate launch`` share a corpus: each takes every
  ``world``-th file of the same sorted list.

Set ``HASRD_DEBUG=1`` to get the full traceback of an unexpected error instead of one line.

The package: this module builds the parser and runs a command (:func:`main`); four small modules
hold what the rules above need: ``errors.py`` (exit codes, :class:`UsageError`, :class:`JobError`,
the one-line problem text, ``HASRD_DEBUG``), ``progress.py`` (the :class:`Reporter`), ``jobs.py``
(input and output resolution, this process's share of the jobs, running them; the process share
of a corpus is :mod:`hasrd.dist`) and ``loading.py`` (``--model``, ``--device``, ``--n-q`` /
``--bitrate``). Encoding a whole file in chunks is library code, :mod:`hasrd.coding`. Each command
is one module with its ``cmd_*`` function and its ``add_parser(sub)``: ``encode.py``,
``decode.py``, ``demo.py`` (``eval`` and ``demo``), ``info.py``, ``entropy_fit.py``,
``export.py``, ``enhance.py``, ``generate.py``, ``speak_to_audio.py``. Command modules import
those four modules only, never this module or each other (``demo`` is handed :func:`main` by
:func:`build_parser`); nothing imports torch at import time, so the CLI starts fast.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from hasrd.cli import decode, demo, encode, enhance, entropy_fit, export, generate, info, models, speak_to_audio
from hasrd.cli.errors import EXIT_OK, EXIT_USAGE, UsageError, one_line
from hasrd.version import __version__

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other hasrd error, plus the usage hint
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"hasrd: error: {one_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hasrd",
        description="Tokenize speech with a hasrd codec and decode it back.",
        epilog="Exit codes: 0 all done, 1 some inputs failed, 2 usage error. See docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"hasrd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    # the order of the command list in --help
    encode.add_parser(sub)
    decode.add_parser(sub)
    demo.add_eval_parser(sub)
    demo.add_parser(sub, main)  # the demo runs encode and decode through main
    info.add_parser(sub)
    models.add_parser(sub)
    entropy_fit.add_parser(sub)
    export.add_parser(sub)
    enhance.add_parser(sub)
    generate.add_parser(sub)
    speak_to_audio.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        with warnings.catch_warnings():
            # library deprecation notices are not the user's business on a one-line-error CLI
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            return args.func(args)
    except UsageError as exc:
        print(f"hasrd: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("hasrd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `hasrd info F | head`: the reader left; say nothing more
        sys.stdout = open(os.devnull, "w")  # no second error when Python flushes stdout at exit
        return EXIT_OK

