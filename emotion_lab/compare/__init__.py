"""Compare a sweep's runs from what MLflow recorded: table, seaborn figures, best model."""
