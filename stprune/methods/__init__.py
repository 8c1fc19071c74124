"""stprune.methods."""
