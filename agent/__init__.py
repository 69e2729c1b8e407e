"""Weft agent."""
