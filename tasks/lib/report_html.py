"""The report page as HTML: one file, inline CSS, images as data URIs, no network; and its run log.

The page is a DVC output, so it holds only what its inputs decide: the same inputs give the same bytes. What
changes from run to run (when, at which commit, each stage's wall time, the dataset's history) is the run log,
`run_log.js` beside the page, which the page's one script tag loads (tasks/lib/run_log.py writes it); without it
the page says how to get it. Pure functions from already-loaded content to text; every value from a file is escaped.
"""

from __future__ import annotations

import json
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
    versions: dict[str, str]
    device: str  # what trained (training.json)


@dataclass(frozen=True)
class RunLog:
    """What differs from run to run, for the page's run log (tasks/lib/run_log.py gathers it)."""

    dataset: str
    written_at: str
    git_commit: str
    timings: dict[str, StageTiming | None]
    history: list  # tasks.lib.run_history.RunRecord, newest first


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
    # reports/<dataset>/ingest.json's drops (tasks/lib/drops.py, IngestSummary), oldest first; None without one
    drops: list[dict] | None = None


SUSPECTS_SHOWN = 50  # disputed labels listed on the page; ingest.json has them all


def render_page(page: ReportPage) -> str:
    sections = [_headline(page), _promotion(page.promotion), _confusion(page), _per_class(page.class_scores),
                _curves(page), _mistakes(page.mistakes), _validation(page.validation, page.data_docs_link),
                _drift(page.drift), _new_data(page.drops), _run_card(page.run_card), _run_log_slot(page.dataset)]
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(page.dataset)}: run report</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(page.dataset)}: run report</h1>",
        '<p>When this run happened, its wall times and the history of runs: <a href="#runs">Runs</a>.</p>',
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
    columns = ["split", "statistic", "measure", "value", "threshold", "result"]
    table = _table(columns, rows, escaped=True) if rows else ""
    return ('<h2 id="drift">Data drift</h2>'
            f'<p class="{css}" data-drift="{state}">{escape(verdict)}</p><p>{escape(drift.outcome)}</p>'
            f"<p>Images now: {escape(images)}; in the data the champion learned from: {escape(reference)} "
            f"(<code>drift.action: {escape(drift.action)}</code>).</p>" + table)


def _new_data(drops: list[dict] | None) -> str:
    """Each drop ingested: what it added and refused, and the labels the champion disputed, by file name."""
    if not drops:
        return ('<h2 id="new-data">New data</h2><p>No drop ingested: the dataset is its base '
                "(<code>make ingest</code> adds one).</p>")
    rows = [[drop["drop"], drop["ingested_at"], ", ".join(f"{split} {sum(counts.values())}"
                                                          for split, counts in drop["added"].items()),
             str(drop["duplicates"]), str(drop["leakage"]), str(drop["quarantined"]),
             str(len(drop.get("label_issues", [])))] for drop in reversed(drops)]
    suspects = [[drop["drop"], issue["path"], issue["label"], issue["champion_says"], f"{issue['top_probability']:.2f}",
                 f"{issue['label_probability']:.2f}"] for drop in reversed(drops)
                for issue in drop.get("label_issues", [])]
    listed = (f"<h3>Labels the champion disputes ({len(suspects)})</h3>"
              "<p>New images whose folder the champion, which never trained on them, does not believe (cleanlab; "
              "<code>ingest.label_issues</code>). Look at each: move a wrong one to its class folder and drop it "
              "again, or keep it.</p>"
              + _table(["drop", "file", "filed as", "the champion says", "its probability", "the label's"],
                       suspects[:SUSPECTS_SHOWN])
              + (f"<p>And {len(suspects) - SUSPECTS_SHOWN} more in <code>ingest.json</code>.</p>"
                 if len(suspects) > SUSPECTS_SHOWN else "")) if suspects else ""
    return ('<h2 id="new-data">New data</h2>'
            + _table(["drop", "ingested (UTC)", "added", "duplicates", "leakage", "quarantined", "labels disputed"],
                     rows) + listed)


def _run_card(card: RunCard) -> str:
    files = [[escape(name), f"<code>{escape(digest)}</code>"] for name, digest in card.file_checksums.items()]
    params = [[escape(key), escape(str(value))] for key, value in card.params.items()]
    versions = [[escape(name), escape(version)] for name, version in card.versions.items()]
    counts = ", ".join(f"{split} {count}" for split, count in card.image_counts.items())
    return ('<h2 id="run-card">Run card</h2>'
            f"<p>Dataset <b>{escape(card.dataset)}</b> ({escape(counts)} images), seed {card.seed}, "
            f"model <b>{escape(str(card.params.get('model', 'dense')))}</b> trained on "
            f'<span data-run-card="device">{escape(card.device)}</span>.</p>'
            "<h3>Raw files (SHA-256)</h3>" + _table(["file", "sha256"], files, escaped=True)
            + "<h3>Training parameters</h3>" + _table(["param", "value"], params, escaped=True)
            + "<h3>Library versions</h3>" + _table(["library", "version"], versions, escaped=True))


def _run_log_slot(dataset: str) -> str:
    """Where the run log appears: filled by run_log.js when it is there, else a line saying how to get it."""
    return ('<h2 id="runs">Runs</h2><div id="run-log"><p>No run log here: <code>run_log.js</code>, beside this page, '
            "is written by every run in this checkout (<code>dvc repro</code>, a flow run) and by "
            f"<code>make history DATASET={escape(dataset)}</code>. It is not versioned: it changes with every run, "
            "while this page changes only with its inputs.</p></div>"
            '<script src="run_log.js"></script>')


def render_run_log(log: RunLog) -> str:
    """run_log.js: one statement that puts the run log's HTML into the page's `run-log` element."""
    timings = [[escape(stage)] + (["not recorded", "", "", ""] if timing is None else
                                  [escape(timing.outcome), f"{timing.seconds:.1f} s", escape(timing.finished_at),
                                   escape(timing.runner)]) for stage, timing in log.timings.items()]
    parts = [f"<p>Run log written {escape(log.written_at)} at commit <code>{escape(log.git_commit)}</code>.</p>",
             "<h3>Wall time per stage (last recorded run)</h3>",
             _table(["stage", "outcome", "wall time", "finished (UTC)", "run by"], timings, escaped=True),
             f"<h3>History: the runs committed for {escape(log.dataset)}, newest first</h3>"]
    if log.history:
        parts += [_accuracy_chart(log.history), _history_table(log.history)]
    else:
        parts.append("<p>No run has committed a version of this dataset yet: deployment runs commit each version "
                     "(README, Deployments and scheduled retraining).</p>")
    body = json.dumps("".join(parts)).replace("</", "<\\/")
    return f'document.getElementById("run-log").innerHTML = {body};\n'


def _history_table(history: list) -> str:
    rows = []
    for record in history:
        changed = ", ".join(f"{key}={value}" for key, value in sorted(record.params_changed.items()))
        accuracy = "-" if record.test_accuracy is None else f"{record.test_accuracy:.4f}"
        rows.append([escape(record.when), f"<code>{escape(record.commit)}</code>", accuracy,
                     f"<code>{escape((record.model_md5 or '-')[:8])}</code>", escape(record.data_version),
                     escape(record.trigger), escape(record.decision), escape(changed)])
    return _table(["when (UTC)", "commit", "test accuracy", "model", "data", "started by", "decision",
                   "params unlike params.yaml"], rows, escaped=True)


def _accuracy_chart(history: list, width: int = 640, height: int = 160, margin: int = 40) -> str:
    """Test accuracy over the committed runs, oldest on the left, as inline SVG: promoted runs in green."""
    runs = [record for record in reversed(history) if record.test_accuracy is not None]
    if not runs:
        return ""
    low, high = min(run.test_accuracy for run in runs), max(run.test_accuracy for run in runs)
    low, high = (low - 0.005, high + 0.005) if high - low < 0.01 else (low, high)
    step = (width - 2 * margin) / max(len(runs) - 1, 1)

    def point(index: int, accuracy: float) -> tuple[float, float]:
        return (margin + index * step, height - margin / 2 - (accuracy - low) / (high - low) * (height - margin))

    points = [point(index, run.test_accuracy) for index, run in enumerate(runs)]
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" '
        f'fill="{"#17692c" if run.decision.startswith("promoted") else "#888"}">'
        f"<title>{escape(run.when)}: {run.test_accuracy:.4f}, {escape(run.decision)}</title></circle>"
        for (x, y), run in zip(points, runs))
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return (f'<svg id="accuracy-over-time" width="{width}" height="{height}" role="img" '
            f'aria-label="test accuracy over {len(runs)} runs">'
            f'<text x="2" y="{height - margin / 2:.0f}" font-size="11">{low:.3f}</text>'
            f'<text x="2" y="{margin / 2:.0f}" font-size="11">{high:.3f}</text>'
            f'<polyline points="{line}" fill="none" stroke="#4a6fa5" stroke-width="2"/>{dots}</svg>'
            "<p>Test accuracy per committed run, oldest on the left; green: promoted.</p>")


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
