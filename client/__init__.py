"""Ostraca's client SDK and CLI."""
