"""Weft: a service mesh for virtual machines and bare metal that also spans Kubernetes."""

__version__ = "0.1.0"
