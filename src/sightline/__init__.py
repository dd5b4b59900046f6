"""Sightline: accountable face identification for camera streams and photo collections.

Nothing heavy happens at import: models load in constructors (``FaceEngine.from_config``).
"""

__version__ = "0.1.0"
