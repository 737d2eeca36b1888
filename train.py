#!/usr/bin/env python
"""Train a hasrd codec. See docs/training.md, or: python train.py --help"""
import sys

from hasrd.train import main

if __name__ == "__main__":
    sys.exit(main())
