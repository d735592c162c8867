"""The ``asymseg`` command: the same engine as the dock, for scripts and headless machines.

Every bad input ends in one line on stderr (``asymseg: error: ...``) and exit code 2, never
a traceback; the message names the problem and the fix.

The command is split by job: :mod:`.parser` declares the subcommands and their options,
:mod:`.commands` and :mod:`.predict` run them, :mod:`.options` turns the config schema into
options, :mod:`.summary` describes a scan and :mod:`.demo` is the headless demo. This module
only dispatches and turns errors into exit codes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from napari_asymseg.cli.parser import EXIT_BAD_INPUT, build_parser
from napari_asymseg.errors import ClearError, error_message

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "build_parser", "main"]

EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C (128 + SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asymseg`` console script; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    # ScanError and TrainingError (ClearError), config checks (ValueError), a full disk or a
    # read-only folder (OSError): one line each, from the same wording as the dock's
    except (ClearError, argparse.ArgumentTypeError, ValueError, OSError) as exc:
        print(f"asymseg: error: {error_message(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("asymseg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
