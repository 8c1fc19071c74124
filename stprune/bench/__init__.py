"""stprune.bench."""
