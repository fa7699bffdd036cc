"""Servables: what a loaded version is, one module per kind (``saved_model``, ...).

This package is the only one that imports a model runtime (TensorFlow); each kind's own module
imports its runtime, and only when a version loads.
"""
