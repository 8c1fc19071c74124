"""``python -m stprune`` runs the CLI (also under ``torchrun -m stprune``)."""

import os
import sys

from stprune.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
    # Under torchrun, leave without the interpreter's teardown: gloo's background threads can
    # abort a rank while it exits ("terminate called without an active exception"), after all of
    # its work is done and its files are closed, and torchrun then reports the whole run failed
    # (seen about once in ten 2-rank CPU runs on a loaded machine).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
