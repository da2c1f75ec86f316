"""The terminal function."""
