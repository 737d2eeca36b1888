"""What the corpus readers of :mod:`hasrd.io.corpora` share: the install hint of their refusals
and the one-line form of a library's exception."""
from __future__ import annotations

INSTALL_HINT = 'pip install "hasrd[corpora]"'


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (the name of its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

