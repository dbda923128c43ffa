"""Predict emotions with the model a training run logged to MLflow (its ``model/`` artifact)."""
