"""stprune.models."""
