"""Accuracy evaluation (``stprune eval``): the VideoMAE multi-view test protocol, resumable result
files, torchrun sharding. One idea per module:

``lists`` video list files; ``decode`` PyAV decoding; ``sampling`` frame and crop indices of the
test views; ``transforms`` resize / crop / normalise; ``dataset`` the torch Dataset of videos with
their views; ``models`` ``--model`` resolution and preprocessing; ``results`` prediction rows,
resume, summary; ``distributed`` process-group plumbing; ``runner`` the loop (``run_eval``).
See docs/eval.md.
"""
