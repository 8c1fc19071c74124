"""``python -m stprune`` runs the CLI (also under ``torchrun -m stprune``)."""

import sys

from stprune.cli import main

sys.exit(main())
