"""The causal analysis of one trained classifier, and of two against each other: which heads
and words change its decisions, with 95% bootstrap intervals over a stratified sample of texts.

One model: head and layer ablation and gradient importance (``importance``), word attributions
(``attributions``), their faithfulness (``faithfulness``), the words of each class
(``class_words``); tables, figures, a self-contained report.html and one-line findings.
Two models: per-layer distributions, the overlap of their top words per class, and how well
their attributions agree on the same texts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.entities import Metric

from emotion_lab.attention import causal_plots, html_report, intervals, passes
from emotion_lab.attention.attributions import RANDOM, TITLES, Attributions, attribute
from emotion_lab.attention.class_words import top_words, words_by_class
from emotion_lab.attention.config import AttentionConfig
from emotion_lab.attention.extract import LoadedModel
from emotion_lab.attention.faithfulness import faithfulness, kendall_tau, most_faithful
from emotion_lab.attention.importance import REMOVABLE_POINTS, Importance, head_importance
from emotion_lab.attention.sampling import LabelledSample
from emotion_lab.attention.tokens import encode_texts
from emotion_lab.attention.words import worded
from emotion_lab.errors import ModelError
from emotion_lab.reports import save_figure
from emotion_lab.store import names as store_names

# How many of a class's top words the two models' lists are compared on.
OVERLAP_WORDS = 10


@dataclass
class Settings:
    """The keys of the attention command that the causal analysis reads."""

    batch_size: int
    max_length: int
    ig_steps: int
    random_seeds: int
    bootstrap_resamples: int
    min_class_word_count: int
    top_words: int
    num_examples: int
    seed: int

    @classmethod
    def of(cls, cfg: AttentionConfig) -> Settings:
        return cls(
            batch_size=cfg.batch_size,
            max_length=cfg.model.max_length,
            ig_steps=cfg.ig_steps,
            random_seeds=cfg.random_seeds,
            bootstrap_resamples=cfg.bootstrap_resamples,
            min_class_word_count=cfg.min_class_word_count,
            top_words=cfg.top_words,
            num_examples=cfg.num_examples,
            seed=cfg.seed,
        )


@dataclass
class CausalResult:
    name: str
    importance: Importance
    attributions: Attributions
    faithfulness: pd.DataFrame
    words: pd.DataFrame
    # The most faithful real method (highest comprehensiveness).
    method: str
    gold: np.ndarray
    class_names: list[str]
    seconds: float


def _gold(loaded: LoadedModel, sample: LabelledSample) -> np.ndarray:
    """The sample's labels as the model's class ids, matched by name."""
    label2id = loaded.model.config.label2id
    missing = [n for n in sample.label_names if n not in label2id]
    if missing:
        raise ModelError(
            f"{loaded.name} has no class {missing[0]!r} of the data's labels "
            f"({', '.join(sample.label_names)}); analyse it with the data it was trained on."
        )
    return np.array([label2id[sample.label_names[c]] for c in sample.labels])


def analyse_model(loaded: LoadedModel, sample: LabelledSample, s: Settings) -> CausalResult:
    start = time.perf_counter()
    model = loaded.model
    gold = _gold(loaded, sample)
    encoded = encode_texts(loaded.tokenizer, sample.texts, s.max_length)
    special = set(loaded.tokenizer.all_special_ids)
    texts = [worded(e, special) for e in encoded]
    keep = [i for i, t in enumerate(texts) if t.num_words >= 2]
    texts, gold = [texts[i] for i in keep], gold[keep]
    rng = np.random.default_rng(s.seed)
    counts = intervals.draw_counts(rng, len(texts), s.bootstrap_resamples)
    seqs = [t.input_ids for t in texts]
    importance = head_importance(
        model, seqs, gold, batch_size=s.batch_size, counts=counts, name=loaded.name
    )
    attributions = attribute(model, texts, s.batch_size, s.ig_steps, loaded.name)
    for column, values in (
        ("pooled_entropy", attributions.pooled_entropy),
        ("pooled_first", attributions.pooled_first),
    ):
        importance.heads[column] = values.mean(0).ravel()

    def predict(batch: list) -> np.ndarray:
        return passes.softmax(
            passes.logits(model, batch, s.batch_size, f"faithfulness {loaded.name}")
        )

    table, _ = faithfulness(attributions, predict, s.random_seeds, s.seed, counts)
    method = most_faithful(table)
    class_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    words = words_by_class(
        attributions,
        method,
        gold,
        class_names,
        min_count=s.min_class_word_count,
        top=s.top_words,
        rng=rng,
        resamples=s.bootstrap_resamples,
    )
    return CausalResult(
        loaded.name,
        importance,
        attributions,
        table,
        words,
        method,
        gold,
        class_names,
        time.perf_counter() - start,
    )


def _interval(row: pd.Series, column: str, fmt: str = ".3g") -> str:
    return f"{row[column]:{fmt}} [{row[column + '_low']:{fmt}}, {row[column + '_high']:{fmt}}]"


def _layers_text(layers: pd.Series) -> str:
    """Where the heads sit, most first: "layer 4 (5), layer 5 (3)"."""
    counts = layers.value_counts().sort_values(ascending=False, kind="stable").head(3)
    return ", ".join(f"layer {int(layer)} ({n})" for layer, n in counts.items())


def findings(r: CausalResult) -> list[str]:
    """The analysis as one-line findings."""
    heads = r.importance.heads
    total = len(heads)
    matters = heads[heads.matters]
    where = f": {_layers_text(matters.layer)}" if len(matters) else ""
    layers = r.importance.layers.sort_values("dloss", ascending=False)
    worst = layers.iloc[0]
    rho = r.importance.spearman
    t = r.faithfulness.set_index("method")
    best = t.loc[r.method]
    random = t.loc[RANDOM]
    top = heads.loc[heads.dloss.abs().idxmax()]
    lines = [
        f"{r.name}: accuracy {r.importance.base_accuracy:.1f}% on {len(r.gold)} texts; "
        f"{len(matters)} of {total} heads matter (ablation interval excludes 0){where}; "
        f"the largest: L{int(top.layer)}H{int(top['head'])}, Δloss {_interval(top, 'dloss')}, "
        f"Δaccuracy {_interval(top, 'dacc', '.1f')} points; removing any one of "
        f"{r.importance.removable} heads costs < {REMOVABLE_POINTS:g} point of accuracy.",
        f"Whole-layer ablation costs most in layer {int(worst.layer)}: Δloss "
        f"{_interval(worst, 'dloss')}, Δaccuracy {_interval(worst, 'dacc', '.1f')} points.",
        f"Ablation and gradient importance agree with Spearman ρ = {rho[0]:.2f} "
        f"[{rho[1]:.2f}, {rho[2]:.2f}].",
        f"{TITLES[r.method]} is the most faithful explanation (comprehensiveness "
        f"{best.comprehensiveness:.3g} vs random {random.comprehensiveness:.3g}; sufficiency "
        f"{best.sufficiency:.3g} vs {random.sufficiency:.3g}).",
    ]
    weak = [TITLES[m] for m, row in t.iterrows() if m != RANDOM and row.gain_vs_random_low <= 0]
    if weak:
        lines.append(
            "No better than random (comprehensiveness gain interval includes 0): "
            f"{', '.join(weak)}."
        )
    lines.append(
        "Integrated gradients: completeness error "
        f"{r.attributions.relative_completeness_error:.1%} of the logit change."
    )
    words = top_words(r.words, "predicted", 3)
    if words:
        lines.append(
            f"Top words per predicted class ({TITLES[r.method]}): "
            + "; ".join(f"{c}: {', '.join(w)}" for c, w in words.items())
            + "."
        )
    return lines


def metrics(r: CausalResult) -> list[Metric]:
    now = int(time.time() * 1000)
    out = [
        Metric(
            store_names.HEADS_THAT_MATTER_METRIC, float(r.importance.heads.matters.sum()), now, 0
        ),
        Metric(store_names.IMPORTANCE_SPEARMAN_METRIC, r.importance.spearman[0], now, 0),
        Metric(
            store_names.IG_COMPLETENESS_METRIC,
            r.attributions.relative_completeness_error,
            now,
            0,
        ),
    ]
    for _, row in r.importance.layers.iterrows():
        layer = int(row.layer)
        out.append(
            Metric(
                store_names.LAYER_ABLATION_DLOSS_METRIC.format(layer=layer),
                float(row.dloss),
                now,
                0,
            )
        )
        out.append(
            Metric(
                store_names.LAYER_ABLATION_DACC_METRIC.format(layer=layer), float(row.dacc), now, 0
            )
        )
    for _, row in r.faithfulness.iterrows():
        out.append(
            Metric(
                store_names.COMPREHENSIVENESS_METRIC.format(method=row.method),
                float(row.comprehensiveness),
                now,
                0,
            )
        )
        out.append(
            Metric(
                store_names.SUFFICIENCY_METRIC.format(method=row.method),
                float(row.sufficiency),
                now,
                0,
            )
        )
    return [m for m in out if np.isfinite(m.value)]


def _save(fig: Figure | None, path: Path) -> Path | None:
    """``reports.save_figure``, for figures that may have nothing to draw (None)."""
    return None if fig is None else save_figure(fig, path)


def _examples(r: CausalResult, n: int) -> list[int]:
    """Misclassified texts first (up to half), then correctly classified ones, in sample order."""
    wrong = [i for i in range(len(r.gold)) if r.attributions.predicted[i] != r.gold[i]]
    right = [i for i in range(len(r.gold)) if r.attributions.predicted[i] == r.gold[i]]
    chosen = wrong[: max(n // 2, n - len(right))]
    return chosen + right[: n - len(chosen)]


def _caption(r: CausalResult, i: int) -> str:
    pred, gold = r.class_names[r.attributions.predicted[i]], r.class_names[r.gold[i]]
    verdict = "correct" if pred == gold else "MISCLASSIFIED"
    return f"predicted {pred} ({r.attributions.probs[i].max():.2f}), gold {gold}: {verdict}"


def write_model(
    r: CausalResult, folder: Path, extra_figures: list[str], num_examples: int
) -> list[str]:
    """head_importance.csv, faithfulness.csv, words_by_class.csv, the figures and report.html;
    returns the findings."""
    r.importance.heads.to_csv(folder / store_names.HEAD_IMPORTANCE_ARTIFACT, index=False)
    r.importance.layers.to_csv(folder / "layer_importance.csv", index=False)
    r.faithfulness.to_csv(folder / store_names.FAITHFULNESS_ARTIFACT, index=False)
    r.words.to_csv(folder / store_names.WORDS_BY_CLASS_ARTIFACT, index=False)
    figures = [
        _save(
            causal_plots.importance_figure(
                r.importance.heads, r.importance.layers, f"{r.name}: head importance"
            ),
            folder / "head_importance.png",
        ),
        _save(
            causal_plots.faithfulness_figure(
                r.faithfulness, f"{r.name}: faithfulness of each explanation"
            ),
            folder / "faithfulness.png",
        ),
        _save(
            causal_plots.words_figure(
                r.words,
                "predicted",
                10,
                f"{r.name}: words that matter per predicted class ({TITLES[r.method]})",
            ),
            folder / "words_by_class.png",
        ),
    ]
    chosen = _examples(r, num_examples)
    examples = [
        (_caption(r, i), r.attributions.texts[i].words, r.attributions.scores[r.method][i])
        for i in chosen
    ]
    if examples:
        figures.append(
            _save(
                causal_plots.examples_figure(examples, f"{r.name}: {TITLES[r.method]}"),
                folder / "examples.png",
            )
        )
    lines = findings(r)
    (folder / "findings.md").write_text("\n".join(f"- {line}" for line in lines) + "\n")
    blocks: list[html_report.Block] = []
    for caption, words, scores in examples:
        blocks += [
            html_report.Raw(f'<div class="caption">{caption}</div>'),
            html_report.coloured_text(words, scores),
        ]
    heads = r.importance.heads.sort_values("dloss", ascending=False)
    sections = [
        ("Findings", [html_report.findings_list(lines)]),
        (
            "Head importance",
            [
                "Ablation: each head's gate set to 0, Δloss and Δaccuracy (points) against the "
                "full model, 95% bootstrap intervals over texts; gradient: E|∂L/∂ξ| normalised "
                "per layer.",
                *[p for p in figures[:1] if p],
                heads.head(20),
                r.importance.layers,
            ],
        ),
        (
            "Faithfulness of each explanation",
            [
                "ERASER AOPC over the top 1/5/10/20/50% of words (removed, never padded); "
                "τ = Kendall's τ-b against leave-one-out.",
                *[p for p in figures[1:2] if p],
                r.faithfulness,
            ],
        ),
        (
            "Words per class",
            [*[p for p in figures[2:3] if p], r.words[r.words.group == "predicted"]],
        ),
        ("Examples", blocks),
        ("Attention statistics", [folder / f for f in extra_figures if (folder / f).exists()]),
    ]
    (folder / store_names.ATTENTION_REPORT_ARTIFACT).write_text(
        html_report.render(f"What matters inside {r.name}", sections)
    )
    return lines


def compare(
    a: CausalResult,
    b: CausalResult,
    folder: Path,
    head_stats: tuple[pd.DataFrame, pd.DataFrame],
    matched: np.ndarray | None,
) -> list[str]:
    """Per-layer distributions, top-word overlap per class and attribution agreement; returns
    findings. ``head_stats``: each model's all-position statistics (entropy, first)."""
    frames = {}
    stats_a, stats_b = head_stats
    for stat, column, ta, tb in (
        ("ablation Δloss", "dloss", a.importance.heads, b.importance.heads),
        ("entropy (nats)", "entropy", stats_a, stats_b),
        ("sink share", "first", stats_a, stats_b),
    ):
        frames[stat] = pd.concat(
            [
                pd.DataFrame({"model": a.name, "layer": ta.layer, "value": ta[column]}),
                pd.DataFrame({"model": b.name, "layer": tb.layer, "value": tb[column]}),
            ]
        )
    _save(
        causal_plots.distributions_figure(frames, (a.name, b.name)),
        folder / "compare_distributions.png",
    )
    lines = []
    top_a = top_words(a.words, "predicted", OVERLAP_WORDS)
    top_b = top_words(b.words, "predicted", OVERLAP_WORDS)
    rows = []
    for cls in sorted(set(top_a) | set(top_b)):
        wa, wb = set(top_a.get(cls, [])), set(top_b.get(cls, []))
        union = wa | wb
        rows.append(
            {
                "class": cls,
                "shared": ", ".join(sorted(wa & wb)),
                "jaccard": len(wa & wb) / len(union) if union else float("nan"),
            }
        )
    overlap = pd.DataFrame(rows, columns=["class", "shared", "jaccard"])
    overlap.to_csv(folder / "top_words_overlap.csv", index=False)
    if len(overlap):
        lines.append(
            f"Top-{OVERLAP_WORDS} words per predicted class shared by both: mean Jaccard "
            f"{overlap.jaccard.mean():.2f}; "
            + "; ".join(f"{r['class']}: {r.shared or 'none'}" for _, r in overlap.iterrows())
        )
    same = [
        ta.input_ids == tb.input_ids
        for ta, tb in zip(a.attributions.texts, b.attributions.texts, strict=False)
    ]
    agreement = []
    if len(a.attributions.texts) == len(b.attributions.texts) and all(same):
        counts = intervals.draw_counts(np.random.default_rng(0), len(same), 1000)
        for method in a.attributions.scores:
            taus = np.array(
                [
                    kendall_tau(x, y)
                    for x, y in zip(
                        a.attributions.scores[method], b.attributions.scores[method], strict=True
                    )
                ]
            )
            est, low, high = intervals.mean_interval(taus, counts)
            agreement.append(
                {
                    "method": method,
                    "tau": float(est),
                    "tau_low": float(low),
                    "tau_high": float(high),
                }
            )
        table = pd.DataFrame(agreement)
        table.to_csv(folder / "attribution_agreement.csv", index=False)
        best = table.set_index("method").loc[b.method]
        lines.append(
            f"Attributions agree across the two models (Kendall τ per text, {TITLES[b.method]}): "
            f"{best.tau:.2f} [{best.tau_low:.2f}, {best.tau_high:.2f}]."
        )
    if matched is not None:
        lines.append(
            "Heads matched across the models per layer (Hungarian on Jensen-Shannon "
            "distance of their attention) before any per-head difference is drawn."
        )
    return lines


def write_comparison_report(names: tuple[str, str], markdown: str, folder: Path) -> None:
    """report.html of the comparison: the markdown report as text, and every figure."""
    figures = sorted(folder.glob("*.png"))
    sections = [
        ("Report", [html_report.Raw("<pre>" + html_report.html.escape(markdown) + "</pre>")]),
        ("Figures", list(figures)),
    ]
    (folder / store_names.ATTENTION_REPORT_ARTIFACT).write_text(
        html_report.render(f"{names[0]} vs {names[1]}", sections)
    )
