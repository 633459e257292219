"""Ostraca's client SDK and CLI."""

from .stream import open_dataset as open_dataset
