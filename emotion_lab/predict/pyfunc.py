"""The MLflow pyfunc model of a job's ``model/`` artifact, for ``mlflow.pyfunc.load_model`` and
``mlflow models serve``: it predicts as ``python -m emotion_lab.predict`` does, with the same code.

MLflow copies this file into the model's folder and runs it when it loads the model (MLflow's
"models from code"), so the model holds no pickle; the weights are the folder's safetensors,
loaded without remote code. It imports ``emotion_lab``, so it serves where emotion_lab is
installed (``--env-manager local`` in the project's environment).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class EmotionClassifier(PythonModel):
    """Input: a frame with the run's text column (or its two columns of a pair). Output: the
    predicted label, its probability and one ``prob_<label>`` column per class."""

    def load_context(self, context: Any) -> None:
        from emotion_lab.predict.model import load_from_dir

        config = context.model_config or {}
        # This file sits in the model's folder, beside the Hugging Face files.
        self.clf = load_from_dir(
            Path(__file__).resolve().parent, config.get("max_length"), config["text_columns"]
        )
        self.batch_size = int(config.get("batch_size", 64))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        # A frame is a hint MLflow infers no signature from: the logged one stays in force.
        from emotion_lab.predict.model import predict_proba
        from emotion_lab.predict.texts import texts_of, with_predictions

        frame = pd.DataFrame(model_input)
        texts = texts_of(frame, self.clf.text_columns)
        probs = predict_proba(self.clf, texts, self.batch_size)
        return with_predictions(pd.DataFrame(index=frame.index), probs, self.clf.label_names)


mlflow.models.set_model(EmotionClassifier())
