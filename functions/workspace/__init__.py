"""The workspace function."""
