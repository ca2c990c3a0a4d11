"""The README and the guides in docs/ against the project: every `make` target and `python -m` module they name
exists, every ```yaml example is a valid part of params.yaml, every relative link and anchor resolves, and the
README stays short. Nothing runs: no server, no training."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

from tasks.common.config import load_params
from tasks.common.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250
README_MAX_COLUMNS = 120
# A ```yaml block right below this line is not a params.yaml excerpt (dvc.yaml, automations.yaml, ...).
FRAGMENT_MARKER = "<!-- fragment -->"
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
MAKE_TARGET_RULE = re.compile(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", re.M)
MODULE = re.compile(r"\bpython3?\s+-m\s+([\w.<>]+)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")


def split_fenced(text: str) -> tuple[str, list[tuple[str, str, str]]]:
    """The text outside fenced code blocks (each block's lines blanked) and the blocks, as (language, body, the
    line just above the opening fence)."""
    prose, blocks, lines = [], [], text.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            prose.append(lines[index])
            index += 1
            continue
        indent = len(lines[index]) - len(lines[index].lstrip())
        end = next((i for i in range(index + 1, len(lines)) if lines[i].strip() == opening.group(1)), len(lines))
        body = "\n".join(line[indent:] for line in lines[index + 1:end])
        blocks.append((opening.group(2).lower(), body, lines[index - 1].strip() if index else ""))
        prose.extend([""] * (end + 1 - index))
        index = end + 1
    return "\n".join(prose), blocks


def code_spans(text: str) -> list[str]:
    """Every fenced block's body and every inline code span (a span may wrap within its paragraph)."""
    prose, blocks = split_fenced(text)
    spans = [body for _, body, _ in blocks]
    for paragraph in re.split(r"\n\s*\n", prose):
        spans.extend(match.group(2).replace("\n", " ") for match in INLINE_CODE.finditer(paragraph))
    return spans


def makefile_targets(makefile: Path = PROJECT_ROOT / "Makefile") -> set[str]:
    """The targets of the Makefile's `name:` rules (variable assignments `NAME :=` excluded)."""
    return set(MAKE_TARGET_RULE.findall(makefile.read_text()))


def make_targets_named(code: str) -> list[str]:
    """The target of each `make ...` in a piece of code: the first word after `make` that is not `VAR=value`."""
    named = []
    for line in code.splitlines():
        words = line.split()
        for position, word in enumerate(words):
            if word.strip("`'\"(") != "make":
                continue
            rest = [each for each in words[position + 1:] if "=" not in each and not each.startswith("-")]
            target = re.match(r"[A-Za-z0-9][\w.-]*", rest[0]) if rest else None
            if target:
                named.append(target.group(0).rstrip("."))
    return named


def unknown_make_targets(text: str, targets: set[str]) -> list[str]:
    """The `make <target>` named in the code of a Markdown text whose target the Makefile lacks."""
    return sorted({name for code in code_spans(text) for name in make_targets_named(code) if name not in targets})


def unresolved_modules(text: str) -> list[str]:
    """The `python -m <module>` named in the code of a Markdown text that do not import from the project root."""
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    named = {match.group(1).rstrip(".") for code in code_spans(text) for match in MODULE.finditer(code)}
    return sorted(name for name in named if "<" not in name and importlib.util.find_spec(name) is None)


def deep_merge(base: dict, override: dict) -> dict:
    """`base` with `override`'s keys on top; mappings are merged key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        both_mappings = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = deep_merge(merged[key], value) if both_mappings else value
    return merged


def invalid_params_examples(text: str, base: dict, folder: Path) -> list[str]:
    """Each ```yaml block (not marked as a fragment) that, merged into `base`, fails params.yaml's validation."""
    problems = []
    for language, body, above in split_fenced(text)[1]:
        if language not in ("yaml", "yml") or above == FRAGMENT_MARKER:
            continue
        try:
            example = yaml.safe_load(body)
        except yaml.YAMLError as error:
            problems.append(f"not valid YAML: {error}\n{body}")
            continue
        if not isinstance(example, dict):
            problems.append(f"not a mapping of params.yaml keys:\n{body}")
            continue
        merged_file = folder / "params.yaml"
        merged_file.write_text(yaml.safe_dump(deep_merge(base, example), sort_keys=False))
        try:
            load_params(merged_file)
        except ConfigError as error:
            problems.append(f"{error}\nin the example:\n{body}")
    return problems


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown text: lowercase, punctuation but '-' and '_' dropped,
    spaces to '-', a repeated anchor numbered -1, -2, ..."""
    anchors: set[str] = set()
    for line in split_fenced(text)[0].splitlines():
        heading = HEADING.match(line)
        if not heading:
            continue
        anchor = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        numbered, count = anchor, 0
        while numbered in anchors:
            count += 1
            numbered = f"{anchor}-{count}"
        anchors.add(numbered)
    return anchors


def broken_links(document: Path, text: str) -> list[str]:
    """The relative links `[x](path#anchor)` of a Markdown text (outside code) whose file or heading is missing."""
    prose = INLINE_CODE.sub("", split_fenced(text)[0])
    problems = []
    for target in LINK.findall(prose):
        if re.match(r"^[a-z][a-z0-9+.-]*:|^//", target):  # https:, mailto:, ...: not ours to check
            continue
        path_part, _, anchor = target.partition("#")
        linked = document.parent / path_part if path_part else document
        if not linked.exists():
            problems.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked.read_text()):
            problems.append(f"{target}: no heading with the anchor #{anchor} in {linked.name}")
    return problems


def document_id(document: Path) -> str:
    return str(document.relative_to(PROJECT_ROOT))


@pytest.mark.parametrize("document", DOCS, ids=document_id)
def test_every_make_target_named_is_in_the_makefile(document):
    assert unknown_make_targets(document.read_text(), makefile_targets()) == []


@pytest.mark.parametrize("document", DOCS, ids=document_id)
def test_every_python_module_named_resolves(document):
    assert unresolved_modules(document.read_text()) == []


@pytest.mark.parametrize("document", DOCS, ids=document_id)
def test_every_yaml_example_is_valid_in_params_yaml(document, tmp_path):
    base = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())

    assert invalid_params_examples(document.read_text(), base, tmp_path) == []


@pytest.mark.parametrize("document", DOCS, ids=document_id)
def test_every_relative_link_and_anchor_resolves(document):
    assert broken_links(document, document.read_text()) == []


def test_the_readme_is_a_front_door():
    lines = (PROJECT_ROOT / "README.md").read_text().splitlines()

    assert len(lines) <= README_MAX_LINES
    assert [number for number, line in enumerate(lines, 1) if len(line) > README_MAX_COLUMNS] == []


def test_the_checks_catch_a_bad_target_module_example_and_link(tmp_path):
    """Each check on small texts: what it must refuse, and what it must let through."""
    targets = {"run", "ingest", "serve"}
    text = ("Run `make ingest DATASET=x FROM=y`, then:\n\n```sh\nmake nosuchtarget DATASET=x  # and make serve\n"
            "python -m tasks.nosuchmodule\npython -m tasks.<stage> <dataset>\npython -m tasks.common.config\n```\n")
    assert unknown_make_targets(text, targets) == ["nosuchtarget"]
    assert unknown_make_targets("wrapped `make\nrun` here, `make\nrunn` there", targets) == ["runn"]
    assert unresolved_modules(text) == ["tasks.nosuchmodule"]

    base = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    good = "```yaml\ndata:\n  mnist-sample:\n    threshold: 0.98\n```\n"
    bad_value = "```yaml\ntrain:\n  epochs: 0\n```\n"
    missing_key = "```yaml\ndatasets: [shoes]\ndata:\n  shoes: {source: images, local_dir: /srv/photos}\n```\n"
    not_yaml = "```yaml\ntrain: [epochs\n```\n"
    fragment = f"{FRAGMENT_MARKER}\n```yaml\nstages:\n  train: {{cmd: python -m tasks.train}}\n```\n"
    assert invalid_params_examples(good + fragment + "```text\nepochs: 0\n```\n", base, tmp_path) == []
    for bad in (bad_value, missing_key, not_yaml, "```yaml\n- a list\n```\n"):
        assert len(invalid_params_examples(bad, base, tmp_path)) == 1, bad
    assert "train.epochs" in invalid_params_examples(bad_value, base, tmp_path)[0]
    assert "data.shoes.mirrors: missing" in invalid_params_examples(missing_key, base, tmp_path)[0]

    guide = tmp_path / "GUIDE.md"
    guide.write_text("# A guide\n\n## Bring your own images (`source: images`)\n\n## Scaling out\n")
    readme = tmp_path / "README.md"
    readme.write_text("## Here\n\n[a](GUIDE.md#bring-your-own-images-source-images) [b](#here) [c](https://x.org/#y) "
                      "[d](GUIDE.md#scaling) [e](NOPE.md) [f](#there) `[g](IN-CODE.md)`\n")
    assert broken_links(readme, readme.read_text()) == [
        "GUIDE.md#scaling: no heading with the anchor #scaling in GUIDE.md",
        f"NOPE.md: no file {tmp_path / 'NOPE.md'}",
        "#there: no heading with the anchor #there in README.md"]
