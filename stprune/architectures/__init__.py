"""Models stprune implements itself (Video Swin) and the loaders of checkpoints and presets.

Nothing here knows about pruning: ``stprune.adapters`` describe these models to the pruners.
"""
