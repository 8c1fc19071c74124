"""stprune.eval."""
