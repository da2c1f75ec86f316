"""The platform's independently deployable Litestar functions."""
