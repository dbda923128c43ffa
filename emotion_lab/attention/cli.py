"""Hydra entry point of the attention analysis: pick the models, sample texts, analyse, log."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from emotion_lab import options
from emotion_lab.attention.config import AttentionConfig, register_schema
from emotion_lab.config import CONFIG_DIR, DataConfig
from emotion_lab.errors import ConfigError, DataError
from emotion_lab.reporting import quiet_libraries, report_error
from emotion_lab.store import names

register_schema()
options.register_resolver()

ARTIFACT_DIR = names.ATTENTION_ARTIFACT_DIR


def sample_texts(cfg: AttentionConfig, data: DataConfig) -> list[str] | list[tuple[str, str]]:
    """The user's texts, or a seeded random sample of the split (texts, or the pairs of a
    two-column ``data.text_column``). A split the data lacks is carved as training carves it
    (``data.seed``)."""
    from emotion_lab.data import load_splits

    if cfg.all_texts:
        return cfg.all_texts
    split = cfg.split or data.eval_split
    roles = {data.train_split: "train", data.eval_split: "validation", data.test_split: "test"}
    if split not in roles:
        raise DataError(
            f"split={split}: expected one of the data's splits {sorted(roles)} "
            "(data.train_split, data.eval_split, data.test_split)."
        )
    ds = getattr(load_splits(data), roles[split])
    ds = ds.shuffle(seed=cfg.seed).select(range(min(cfg.num_texts, len(ds))))
    columns = [list(ds[c]) for c in data.text_columns]
    return columns[0] if len(columns) == 1 else list(zip(*columns, strict=True))


def _data_of(cfg: AttentionConfig, client: Any, refs: list[Any], data_given: bool) -> DataConfig:
    """The data config given, or else that of the (first) run analysed."""
    from emotion_lab.attention import runs

    if refs and not data_given:
        logged = runs.run_data(client, refs[0].run_id)
        if logged is not None:
            print(f"Texts from the data {refs[0].name} trained on: {logged.path}", flush=True)
            return logged
    return cfg.data


def _folder(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name)


def _resolve_runs(cfg: AttentionConfig) -> tuple[Any, list[Any]]:
    """(MLflow client, the runs to analyse); (None, []) when a model id is analysed instead."""
    from emotion_lab.attention import runs
    from emotion_lab.store.connection import open_client

    if not (cfg.run_id or cfg.sweep_id):
        return None, []
    client = open_client(cfg.tracking.uri)
    if cfg.sweep_id:
        pair, why = runs.sweep_pair(client, cfg.tracking.experiment, cfg.sweep_id)
        print(why, flush=True)
        return client, list(pair)
    return client, [runs.run_ref(client, i) for i in (cfg.run_id, cfg.compare_run_id) if i]


def _causal_sample(cfg: AttentionConfig, data: DataConfig, refs: list[Any]) -> Any:
    """The labelled sample of the causal analysis, or None (with why) when it cannot run."""
    from emotion_lab.attention.sampling import causal_sample

    if not cfg.causal:
        return None
    if not refs or cfg.all_texts:
        print(
            "Causal analysis skipped: it needs a run's trained classifier (run_id or sweep_id) "
            "and the labelled texts of a split (no text/texts).",
            flush=True,
        )
        return None
    return causal_sample(data, cfg.split, cfg.num_causal_texts, cfg.seed)


@dataclass
class _Analysed:
    """One model's results, kept for the comparison."""

    name: str
    stats: Any  # attention.stats.HeadStats
    causal: Any  # attention.causal.CausalResult, or None without the causal analysis
    # (encoded texts, their attention) to match heads with the other model; none for one model.
    attention: Any


def _causal(cfg: AttentionConfig, loaded: Any, sample: Any, folder: Path) -> tuple[Any, list[str]]:
    """The causal analysis of one model, written into its folder: (result, findings)."""
    from emotion_lab.attention import causal

    result = causal.analyse_model(loaded, sample, causal.Settings.of(cfg))
    return result, causal.write_model(result, folder, ["head_stats.png"], cfg.num_examples)


def analyse(cfg: AttentionConfig, output_dir: Path, data_given: bool = True) -> None:
    """``data_given``: the ``data.*`` keys were set; if not, a run's own data is sampled."""
    from emotion_lab.attention import analysis, causal, matching, runs
    from emotion_lab.attention.extract import load_model_config, load_model_dir
    from emotion_lab.attention.tokens import encode_texts
    from emotion_lab.store.reader import load_logged_model

    client, refs = _resolve_runs(cfg)
    data = _data_of(cfg, client, refs, data_given)
    texts = sample_texts(cfg, data)
    if cfg.example_index >= len(texts):
        raise ConfigError(f"example_index={cfg.example_index}: there are {len(texts)} texts.")
    sample = _causal_sample(cfg, data, refs)

    analysed = []
    for ref in refs or [None]:
        with tempfile.TemporaryDirectory() as tmp:
            if ref is None:
                loaded = load_model_config(cfg.model, cfg.init, cfg.seed)
            else:
                path = load_logged_model(client, ref.run_id, Path(tmp))
                loaded = load_model_dir(path, ref.name)
            encoded = encode_texts(loaded.tokenizer, texts, cfg.model.max_length)
            folder = output_dir / _folder(loaded.name + (f"-{ref.run_id[:8]}" if ref else ""))
            folder.mkdir(parents=True, exist_ok=True)
            # First: a wrong layer or head fails before the long pass.
            analysis.draw_example(
                loaded,
                encoded[cfg.example_index],
                layer=cfg.layer,
                head=cfg.head,
                out_dir=folder,
                bertviz=cfg.bertviz,
            )
            stats = analysis.head_statistics(loaded, encoded, cfg.batch_size)
            # A run's model is a trained classifier: its classes and its verdict on the text.
            prediction = (
                None
                if ref is None
                else analysis.example_prediction(loaded, encoded[cfg.example_index])
            )
            summary = analysis.write_model_analysis(
                loaded.name,
                stats,
                folder,
                top_words=cfg.top_words,
                min_count=cfg.min_word_count,
                prediction=prediction,
            )
            few = encoded[: cfg.match_texts] if len(refs) == 2 else []
            attention = (few, matching.attention_of(loaded, few, cfg.batch_size))
            result, findings = (
                (None, []) if sample is None else _causal(cfg, loaded, sample, folder)
            )
        print(summary, flush=True)
        if result is not None:
            print(f"## What matters ({result.seconds:.0f} s)\n", flush=True)
            print("\n".join(f"- {line}" for line in findings) + "\n", flush=True)
        if ref is not None:
            metrics = runs.stats_metrics(stats, cfg.per_head_metrics)
            metrics += [] if result is None else causal.metrics(result)
            runs.log_analysis(
                client, ref.run_id, folder, ARTIFACT_DIR, metrics, cfg.tracking.max_outage_s
            )
            print(f"Logged {folder} to run {ref.name} ({ref.run_id}) under {ARTIFACT_DIR}/\n")
        analysed.append(
            _Analysed(loaded.name, stats, result, attention if len(refs) == 2 else None)
        )

    if len(analysed) == 2:
        _compare(cfg, client, refs, analysed, output_dir / "compare")
    print(f"Files: {output_dir}", flush=True)


def _compare(
    cfg: AttentionConfig, client: Any, refs: list[Any], analysed: list[_Analysed], folder: Path
) -> None:
    """The two models compared, heads matched first; logged to the sweep's parent run when both
    runs belong to it, else to both runs."""
    from emotion_lab.attention import analysis, causal, runs

    a, b = analysed
    matched = _match([a.attention, b.attention])
    text = analysis.write_comparison(
        (a.name, b.name),
        a.stats,
        b.stats,
        folder,
        top_words=cfg.top_words,
        min_count=cfg.min_word_count,
        matched=matched,
    )
    if a.causal is not None and b.causal is not None:
        lines = causal.compare(a.causal, b.causal, folder, (a.stats.table, b.stats.table), matched)
        text += "\n## 4. What matters, compared\n\n" + "\n".join(f"- {x}" for x in lines) + "\n"
        (folder / "comparison.md").write_text(text)
        causal.write_comparison_report((a.name, b.name), text, folder)
    print(text, flush=True)
    target_path = f"{ARTIFACT_DIR}/{_folder(a.name)}_vs_{_folder(b.name)}"
    for run_id in runs.comparison_targets(*refs):
        runs.log_analysis(client, run_id, folder, target_path, [], cfg.tracking.max_outage_s)
        print(f"Logged the comparison to run {run_id} under {target_path}/")


def _match(inputs: list[Any]) -> Any:
    """Head matching of the two models, or None when they differ in shape (the comparison then
    refuses them) or tokenize the texts differently (their attention rows are then not over the
    same keys)."""
    from emotion_lab.attention import matching

    (enc_a, att_a), (enc_b, att_b) = inputs
    if att_a[0].shape[:2] != att_b[0].shape[:2]:
        return None
    if [e.input_ids for e in enc_a] != [e.input_ids for e in enc_b]:
        print("Heads not matched: the two models tokenize the texts differently.", flush=True)
        return None
    return matching.match_heads(matching.js_distances(att_a, att_b))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="attention")
def main(dcfg: DictConfig) -> None:
    quiet_libraries()
    try:
        cfg: AttentionConfig = OmegaConf.to_object(dcfg)  # type: ignore[assignment]
        hc = HydraConfig.get()
        data_given = any(o.lstrip("+~").startswith("data") for o in hc.overrides.task)
        analyse(cfg, Path(hc.runtime.output_dir), data_given)
    except Exception as e:
        report_error(e, bool(dcfg.get("debug", False)))
        raise SystemExit(1) from None
