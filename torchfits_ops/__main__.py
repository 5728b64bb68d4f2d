"""python -m torchfits_ops: the torchfits command (torchfits_ops/cli.py)."""
import sys

from .cli import main

sys.exit(main())
