"""Weft proxy."""
