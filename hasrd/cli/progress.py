"""The :class:`Reporter`: error lines and the progress bar of a batch (stderr)."""
from __future__ import annotations

import sys


class Reporter:
    """Prints errors and drives the progress bar (stderr; shown only on a terminal)."""

    def __init__(self, total: int | None, desc: str, show: bool):
        self.bar = None
        if show and (total is None or total > 1):  # None: not known ahead (a streamed dataset)
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=desc, unit="file", file=sys.stderr, disable=None, leave=False)
            except ImportError:  # pragma: no cover
                self.bar = None
        self.failed = 0

    def error(self, message: str) -> None:
        self.failed += 1
        line = f"hasrd: error: {message}"
        if self.bar is not None and not self.bar.disable:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
