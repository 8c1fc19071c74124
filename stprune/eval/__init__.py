"""Accuracy evaluation (``stprune eval``): the VideoMAE multi-view test protocol, resumable result
files, torchrun sharding. One idea per module:

``lists`` video list files; ``decode`` PyAV decoding; ``sampling`` frame and crop indices of the
test views; ``transforms`` resize / crop / normalise; ``dataset`` the torch Dataset of videos with
their views; ``results`` prediction rows, resume, summary, sweep files; ``distributed``
process-group plumbing; ``sweep`` the engine that runs every pruning setting on the same batches
(also behind ``stprune demo``); ``runner`` the entry point (``run_eval``), in four steps:
``options`` (every option checked), ``plan`` (the model, each setting resolved once with its
folder, what is left to do), ``loop`` (one rank's videos decoded once, every setting run on their
views, rows appended), ``report`` (merged rows, summaries, ``sweep.json`` / ``sweep.png``).
``--model`` resolution and preprocessing live in ``stprune.architectures.loading``.
See docs/eval.md.
"""

from stprune.eval.stats import PairedComparison, compare, top1_ci

__all__ = ["PairedComparison", "compare", "top1_ci"]
