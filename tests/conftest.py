"""Shared fixtures. Each test gets its own temp directory; servers are real apps."""
