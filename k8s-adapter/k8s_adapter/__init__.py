"""Weft Kubernetes adapter."""
