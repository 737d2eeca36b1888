#!/usr/bin/env python
"""Evaluate hasrd codecs and baselines: ``python evaluate.py --help`` (docs/evaluation.md)."""
import sys

from hasrd.eval import main

if __name__ == "__main__":
    sys.exit(main())
