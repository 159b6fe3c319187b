"""SRPO / Direct-Align: preference alignment for rectified-flow diffusion models.

The library knows nothing of the studio: it reports progress through callbacks.
"""

__version__ = "0.1.0"
