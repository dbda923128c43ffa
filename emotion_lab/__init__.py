"""emotion_lab: reproducible transformer text-classification experiments."""

__version__ = "0.1.0"
