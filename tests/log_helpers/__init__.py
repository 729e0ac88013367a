"""Shared pieces of the log tests: a tiny CNN, digits data and subprocess scripts."""
