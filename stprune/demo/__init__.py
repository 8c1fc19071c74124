"""stprune.demo."""
