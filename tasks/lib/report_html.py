"""The report page as HTML: one file, inline CSS, images as data URIs, no script and no network.

Pure functions from already-loaded content to text; every value from a file is escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from tasks.common.timings import StageTiming
from tasks.lib.outputs import ClassScores, DriftReport, Metrics, PromotionDecision, TrainingSummary, ValidationSummary

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f3f3f3; } td.number { text-align: right; font-variant-numeric: tabular-nums; }
.headline { display: flex; gap: 2em; flex-wrap: wrap; } .headline div { font-size: 1.1em; }
.headline .value { display: block; font-size: 1.8em; font-weight: bold; }
.pass { color: #17692c; } .fail { color: #b00020; font-weight: bold; }
.pair { display: flex; gap: 1em; } .pair img { width: 49%; }
.gallery { display: flex; flex-wrap: wrap; gap: 10px; }
.gallery figure { margin: 0; width: 110px; font-size: 0.8em; text-align: center; }
img { max-width: 100%; } code { background: #f3f3f3; padding: 0 3px; }
"""


@dataclass(frozen=True)
class Mistake:
    """A misclassified test image: its row in the test set, the classes and the model's confidence."""

    index: int
    true_class: str
    predicted_class: str
    confidence: float
    thumbnail: str = ""  # data URI


@dataclass(frozen=True)
class RunCard:
    dataset: str
    file_checksums: dict[str, str]
    image_counts: dict[str, int]
    params: dict
    seed: int
    git_commit: str
    versions: dict[str, str]
    timings: dict[str, StageTiming | None]
    generated_at: str
    device: str  # what trained (training.json)


@dataclass(frozen=True)
class ReportPage:
    dataset: str
    metrics: Metrics
    class_scores: ClassScores
    promotion: PromotionDecision | None
    training: TrainingSummary
    figures: dict[str, str]  # name -> data URI: confusion_counts, confusion_normalized, curves
    mistakes: list[Mistake]
    validation: ValidationSummary
    data_docs_link: str
    drift: DriftReport
    run_card: RunCard


def render_page(page: ReportPage) -> str:
    sections = [_headline(page), _promotion(page.promotion), _confusion(page), _per_class(page.class_scores),
                _curves(page), _mistakes(page.mistakes), _validation(page.validation, page.data_docs_link),
                _drift(page.drift), _run_card(page.run_card)]
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(page.dataset)}: run report</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(page.dataset)}: run report</h1>",
        f"<p>Generated {escape(page.run_card.generated_at)} at commit "
        f"<code>{escape(page.run_card.git_commit)}</code>.</p>",
        *sections, "</body></html>", ""])


def _headline(page: ReportPage) -> str:
    metrics, training = page.metrics, page.training
    stop = "threshold reached" if training.stopped_by_threshold else "epoch limit"
    cells = [("model", "model", str(training.params.get("model", "dense"))),
             ("trained on", "device", training.device),
             ("test accuracy", "test_accuracy", f"{metrics.test_accuracy:.4f}"),
             ("test loss", "test_loss", f"{metrics.test_loss:.4f}"),
             (f"stop epoch ({stop})", "stop_epoch", str(metrics.stop_epoch)),
             ("test images", "test_images", str(metrics.test_images))]
    items = "".join(f'<div>{escape(label)}<span class="value" data-metric="{key}">{escape(value)}</span></div>'
                    for label, key, value in cells)
    return f'<h2 id="headline">Headline</h2><div class="headline">{items}</div>'


def _promotion(promotion: PromotionDecision | None) -> str:
    if promotion is None:
        return '<h2 id="promotion">Promotion</h2><p>No promotion decision yet (the promote stage has not run).</p>'
    verdict = "promoted to production" if promotion.promoted else "not promoted: the champion stays"
    rows = [[gate["gate"], _verdict(gate["passed"]), escape(gate["detail"])] for gate in promotion.gates]
    return (f'<h2 id="promotion">Promotion</h2><p class="{"pass" if promotion.promoted else "fail"}" '
            f'data-promoted="{str(promotion.promoted).lower()}">{escape(verdict)}</p>'
            f"<p>{escape(promotion.reason)}</p>" + _table(["gate", "result", "detail"], rows, escaped=True))


def _confusion(page: ReportPage) -> str:
    return ('<h2 id="confusion">Confusion matrix (test set)</h2>'
            f'<div class="pair"><img alt="confusion matrix, counts" src="{page.figures["confusion_counts"]}">'
            f'<img alt="confusion matrix, row-normalized" src="{page.figures["confusion_normalized"]}"></div>')


def _per_class(class_scores: ClassScores) -> str:
    rows = [[name, f"{scores['precision']:.4f}", f"{scores['recall']:.4f}", f"{scores['f1']:.4f}",
             str(scores["support"])] for name, scores in class_scores.per_class.items()]
    return '<h2 id="per-class">Per class</h2>' + _table(["class", "precision", "recall", "F1", "support"], rows)


def _curves(page: ReportPage) -> str:
    training = page.training
    how = "the threshold callback stopped it" if training.stopped_by_threshold else "it ran to the epoch limit"
    return ('<h2 id="training">Training curves</h2>'
            f"<p>Training stopped after epoch {training.stop_epoch}: {how} "
            f"({escape(training.monitor)} threshold {training.threshold:g}).</p>"
            f'<img alt="training curves" src="{page.figures["curves"]}">')


def _mistakes(mistakes: list[Mistake]) -> str:
    if not mistakes:
        return '<h2 id="mistakes">Most confident mistakes</h2><p>No test image was misclassified.</p>'
    figures = "".join(
        f'<figure><img alt="test image {mistake.index}" src="{mistake.thumbnail}"><figcaption>'
        f"{escape(mistake.true_class)} &rarr; {escape(mistake.predicted_class)}<br>{mistake.confidence:.2%} "
        f"(#{mistake.index})</figcaption></figure>" for mistake in mistakes)
    return ('<h2 id="mistakes">Most confident mistakes</h2><p>Misclassified test images, the most confident first '
            f'(true &rarr; predicted, confidence, test row).</p><div class="gallery">{figures}</div>')


def _validation(validation: ValidationSummary, data_docs_link: str) -> str:
    rows = [[escape(split), escape(result["description"] or ""), f"<code>{escape(result['expectation'])}</code>",
             escape(str(result["column"] or "")), _verdict(result["success"]),
             f"{result['unexpected_count']} / {result['element_count']}",
             escape("" if result["observed_value"] is None else str(result["observed_value"]))]
            for split, results in validation.splits.items() for result in results]
    counts = ", ".join(f"{split} {count}" for split, count in validation.image_counts.items())
    return ('<h2 id="validation">Data validation</h2>'
            f"<p>{'All expectations met' if validation.success else 'Some expectations failed'} "
            f"({escape(counts)} images). Full report: "
            f'<a href="{escape(data_docs_link)}">Great Expectations Data Docs</a>.</p>'
            + _table(["split", "expectation", "type", "column", "result", "unexpected / rows", "observed"], rows,
                     escaped=True))


def _drift(drift: DriftReport) -> str:
    if drift.blocked:
        verdict, css = "Drift: training blocked", "fail"
    elif drift.accepted:
        verdict, css = "Drift, accepted", "pass"
    elif drift.drifted:
        verdict, css = "Drift (warning: trained anyway)", "fail"
    else:
        verdict, css = ("No drift" if drift.measures else "Not checked"), "pass"
    state = "blocked" if drift.blocked else "accepted" if drift.accepted else "drift" if drift.drifted else (
        "none" if drift.measures else "unchecked")
    images = ", ".join(f"{split} {count}" for split, count in drift.images.items())
    reference = ", ".join(f"{split} {count}" for split, count in drift.reference_images.items()) or "none"
    rows = [[escape(row["split"]), escape(row["statistic"].replace("_", " ")), escape(row["measure"]),
             f"{row['value']:.4f}", f"{row['threshold']:g}",
             '<span class="fail">drift</span>' if row["drifted"] else '<span class="pass">within</span>']
            for row in drift.measures]
    table = _table(["split", "statistic", "measure", "value", "threshold", "result"], rows, escaped=True) if rows else ""
    return ('<h2 id="drift">Data drift</h2>'
            f'<p class="{css}" data-drift="{state}">{escape(verdict)}</p><p>{escape(drift.outcome)}</p>'
            f"<p>Images now: {escape(images)}; in the data the champion learned from: {escape(reference)} "
            f"(<code>drift.action: {escape(drift.action)}</code>).</p>" + table)


def _run_card(card: RunCard) -> str:
    files = [[escape(name), f"<code>{escape(digest)}</code>"] for name, digest in card.file_checksums.items()]
    params = [[escape(key), escape(str(value))] for key, value in card.params.items()]
    versions = [[escape(name), escape(version)] for name, version in card.versions.items()]
    timings = [[escape(stage)] + (["not recorded", "", "", ""] if timing is None else
                          [escape(timing.outcome), f"{timing.seconds:.1f} s", escape(timing.finished_at),
                           escape(timing.runner)]) for stage, timing in card.timings.items()]
    counts = ", ".join(f"{split} {count}" for split, count in card.image_counts.items())
    return ('<h2 id="run-card">Run card</h2>'
            f"<p>Dataset <b>{escape(card.dataset)}</b> ({escape(counts)} images), seed {card.seed}, "
            f"model <b>{escape(str(card.params.get('model', 'dense')))}</b> trained on "
            f'<span data-run-card="device">{escape(card.device)}</span>, '
            f"git commit <code>{escape(card.git_commit)}</code>.</p>"
            "<h3>Raw files (SHA-256)</h3>" + _table(["file", "sha256"], files, escaped=True)
            + "<h3>Training parameters</h3>" + _table(["param", "value"], params, escaped=True)
            + "<h3>Wall time per stage (last recorded run)</h3>"
            + _table(["stage", "outcome", "wall time", "finished (UTC)", "run by"], timings, escaped=True)
            + "<h3>Library versions</h3>" + _table(["library", "version"], versions, escaped=True))


def _verdict(passed: bool) -> str:
    return '<span class="pass">pass</span>' if passed else '<span class="fail">FAIL</span>'


def _table(header: list[str], rows: list[list[str]], escaped: bool = False) -> str:
    """An HTML table; cells are escaped here unless the caller already built them as HTML."""
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = "".join("<tr>" + "".join(_cell(cell, escaped) for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(cell: str, escaped: bool) -> str:
    text = cell if escaped else escape(cell)
    numeric = cell.replace(".", "", 1).replace(" s", "").isdigit()
    return f'<td class="number">{text}</td>' if numeric else f"<td>{text}</td>"
