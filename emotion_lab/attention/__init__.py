"""Attention analysis of trained classifiers: which layers, heads and words they attend to.

Run it with ``python -m emotion_lab.attention`` (``conf/attention.yaml``).
"""
