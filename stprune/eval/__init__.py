"""Accuracy evaluation (``stprune eval``): the VideoMAE multi-view test protocol, resumable result
files, torchrun sharding. One idea per module:

``lists`` video list files; ``decode`` PyAV decoding; ``sampling`` frame and crop indices of the
test views; ``transforms`` resize / crop / normalise; ``dataset`` the torch Dataset of videos with
their views; ``results`` prediction rows, resume, summary, sweep files; ``distributed``
process-group plumbing; ``sweep`` the engine that runs every pruning setting on the same batches
(also behind ``stprune demo``); ``runner`` the loop (``run_eval``). ``--model`` resolution and
preprocessing live in ``stprune.architectures.loading``.
See docs/eval.md.
"""
