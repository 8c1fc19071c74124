"""stprune.core."""
