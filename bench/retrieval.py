"""Retrieval benchmark: BANKING77, the Debian FAQ (en, zh-cn, cross-lingual), the sample knowledge
base's routing, and scale.

    .venv/bin/python bench/retrieval.py                    # everything -> bench/results/retrieval.json
    .venv/bin/python bench/retrieval.py --only banking77   # one part (others kept from the last run)
    .venv/bin/python bench/retrieval.py --only sample      # faithfulness questions, retrieval + routing only
    .venv/bin/python bench/retrieval.py --only banking77-ablation   # which signals rank BANKING77 best (dev/test)
        # (with `wordllama` installed, also a second dense view: WordLlamaView)
    .venv/bin/python bench/retrieval.py --only scale --sizes 1000 10000 100000

BANKING77 (../shared/data/banking77, CC BY 4.0): one FAQ entry per intent, its question written
from the intent name ("card_arrival" -> "card arrival?") with 5 training queries as alternates (seeded
sample), then again with all of them; the 3,080 test queries are searched through the same
``build_index`` / ``open_retriever`` path the assistant uses. A plain TF-IDF baseline (word unigrams,
sublinear tf, cosine to each entry's concatenated phrasings) is computed in the same run.

Debian FAQ: the HTML pages of the Debian packages ``debian-faq`` and ``debian-faq-zh-cn`` are the
knowledge base (documents, chunked); the queries below are paraphrases written for this benchmark
(not copied from the FAQ's own questions); the expected answer is the page that answers them.
English queries are also run against the Chinese-only FAQ.

Sample (``sample_kb``): the questions of ``bench/faithfulness.jsonl`` (dev) and
``bench/faithfulness_holdout.jsonl`` (held out) over the sample ``kb/``, through the turn's steps
before the LLM (query rewriting, search, ``decide_route`` at the thresholds of ``assistant.toml``):
how often the route answers from passages that hold every expected fact ("grounded", the most a
perfect model can get right), how often unanswerable questions reach the fallback, and both again
at other ``[answer] relevance_threshold`` values (``relevance_sweep``). No LLM runs; a minute.

Scale: FAQ entries built from real sentences of the Debian Reference (en + zh-cn) paired at random
(seeded) to reach 1k, 10k and 100k passages; build throughput, query latency p50/p95 (query
embedding included, one query at a time as a turn does it) and memory.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gzip
import json
import math
import os
import random
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.config import Settings  # noqa: E402
from assistant.kb.evaluate import EvalCase, evaluate  # noqa: E402
from assistant.registry import build_index, open_retriever  # noqa: E402

BANKING = ROOT.parent / "shared" / "data" / "banking77"
if not BANKING.exists():
    BANKING = Path("/work/shared/data/banking77")
FAQ_DIR = Path("/usr/share/doc/debian/FAQ")
REFERENCE_DIR = Path("/usr/share/debian-reference")
RESULTS = ROOT / "bench" / "results" / "retrieval.json"

# --------------------------------------------------------------------------------------------
# Debian FAQ queries: paraphrases -> the page (chapter) that answers them
# --------------------------------------------------------------------------------------------

DEBIAN_EN = [
    ("How do you say the word Debian and where does the name come from?", "basic-defs"),
    ("Is Debian only about Linux or are there other kernels too?", "basic-defs"),
    ("Why would I pick Debian instead of another distro?", "basic-defs"),
    ("Where can I download an ISO image to install Debian?", "getting-debian"),
    ("Can I install Debian over the network without CDs?", "getting-debian"),
    ("Which release of Debian is the newest one?", "getting-debian"),
    ("Should I run stable, testing or unstable?", "choosing"),
    ("My hardware is not detected in stable, what can I do?", "choosing"),
    ("Is Ubuntu or Knoppix the same as Debian?", "choosing"),
    ("Which CPU architectures does Debian support?", "compatibility"),
    ("Can I install a .deb file on Red Hat?", "compatibility"),
    ("How do I install a program that is not packaged for Debian?", "compatibility"),
    ("How can I set up tools to compile software from source?", "software"),
    ("Why does the linker say cannot find -lfoo?", "software"),
    ("How do I find out which version of Debian I am running?", "software"),
    ("What do the code names like sid and buster mean?", "ftparchives"),
    ("How can I make my own repository that apt can use?", "ftparchives"),
    ("Where do I find the source code of packages?", "ftparchives"),
    ("What is inside a .deb binary package file?", "pkg-basics"),
    ("How do I stop a package from being upgraded?", "pkg-basics"),
    ("What does it mean when one package recommends another?", "pkg-basics"),
    ("How can I list every package installed on my machine?", "pkgtools"),
    ("Which package does this file belong to?", "pkgtools"),
    ("How can I see the files that a package installed?", "pkgtools"),
    ("How do I upgrade my whole system to the latest packages?", "uptodate"),
    ("Can I delete the downloaded .deb files in the apt cache?", "uptodate"),
    ("Can upgrades be installed automatically every night?", "uptodate"),
    ("How do I build my own custom kernel on Debian?", "kernel"),
    ("Is it safe to remove an old kernel package?", "kernel"),
    ("How does Debian boot, and what about System V init?", "customizing"),
    ("How do I make every program use A4 paper?", "customizing"),
    ("How can I choose between vim and other editors as the default?", "customizing"),
    ("Where can I ask questions about Debian online?", "support"),
    ("How do I report a bug in a Debian package?", "support"),
    ("How do I become a Debian developer?", "contributing"),
    ("Can I donate money to Debian?", "contributing"),
    ("Am I allowed to sell CDs of Debian?", "redistributing"),
    ("Can I ship Debian together with proprietary software?", "redistributing"),
    ("Who wrote this FAQ and how do I send feedback?", "faqinfo"),
]

DEBIAN_ZH = [
    ("Debian这个名字怎么读，是什么意思？", "basic-defs"),
    ("为什么要选择Debian而不是别的发行版？", "basic-defs"),
    ("在哪里可以下载Debian的安装镜像？", "getting-debian"),
    ("能不能直接通过网络安装Debian？", "getting-debian"),
    ("我应该用稳定版、测试版还是不稳定版？", "choosing"),
    ("Ubuntu和Knoppix跟Debian是什么关系？", "choosing"),
    ("Debian支持哪些硬件架构？", "compatibility"),
    ("可以在红帽系统上安装deb软件包吗？", "compatibility"),
    ("怎么安装一个不是Debian打包的程序？", "compatibility"),
    ("怎样搭建编译软件的开发环境？", "software"),
    ("编译时提示找不到 -lfoo 是怎么回事？", "software"),
    ("如何查看我用的是哪个版本的Debian？", "software"),
    ("sid这些代号是什么意思？", "ftparchives"),
    ("怎么建立自己的apt软件源？", "ftparchives"),
    ("deb二进制包的格式是什么样的？", "pkg-basics"),
    ("怎样让一个软件包不被升级？", "pkg-basics"),
    ("怎么列出系统里已经安装的软件包？", "pkgtools"),
    ("如何知道某个文件属于哪个软件包？", "pkgtools"),
    ("怎样把整个系统升级到最新？", "uptodate"),
    ("apt缓存里下载的deb文件可以删掉吗？", "uptodate"),
    ("如何编译自定义内核？", "kernel"),
    ("Debian系统是怎样启动的？", "customizing"),
    ("有哪些在线社区可以讨论Debian问题？", "support"),
    ("怎么给Debian报告错误？", "support"),
    ("如何成为Debian开发者？", "contributing"),
    ("我可以制作并出售Debian光盘吗？", "redistributing"),
]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _settings(tmp: Path) -> Settings:
    """Default settings rooted in ``tmp``, with the project's models (``ASSISTANT__GENERAL__MODELS_DIR``
    overrides where they are: the English view's model is looked up there)."""
    s = Settings(root=tmp)
    s.kb.index_dir = str(tmp / "index")
    s.general.models_dir = os.environ.get("ASSISTANT__GENERAL__MODELS_DIR", str(ROOT / "models"))
    return s


def _rss_mb() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                name, value = line.split(":")
                out[name] = float(value.split()[0]) / 1024
    return {"rss_mb": round(out.get("VmRSS", 0), 1), "peak_rss_mb": round(out.get("VmHWM", 0), 1)}


def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, math.ceil(q * len(s)) - 1)]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------------------------
# BANKING77
# --------------------------------------------------------------------------------------------


def _banking(name: str) -> list[tuple[str, str]]:
    with (BANKING / name).open(encoding="utf-8") as f:
        return [(r["text"], r["category"]) for r in csv.DictReader(f)]


def banking_rows(n_alternates: int | None, seed: int = 0) -> list[dict[str, Any]]:
    by_intent: dict[str, list[str]] = {}
    for text, intent in _banking("train.csv"):
        by_intent.setdefault(intent, []).append(text)
    rng = random.Random(seed)
    rows = []
    for intent in json.loads((BANKING / "categories.json").read_text()):
        queries = by_intent[intent][:]
        rng.shuffle(queries)
        alternates = queries if n_alternates is None else queries[:n_alternates]
        question = intent.replace("_", " ").replace(" or ", " or ") + "?"
        rows.append({"id": intent, "question": question, "answer": f"(the answer about {intent})", "alternates": alternates})
    return rows


def _tfidf_baseline(rows: list[dict[str, Any]], queries: list[tuple[str, str]]) -> dict[str, float]:
    """Word-unigram TF-IDF (sublinear tf, smooth idf, L2) against each entry's concatenated phrasings."""

    def words(text: str) -> list[str]:
        return re.findall(r"[a-z0-9']+", text.lower())

    docs = [words(" ".join([r["question"], *r["alternates"]])) for r in rows]
    vocab = {w: i for i, w in enumerate(sorted({w for d in docs for w in d}))}
    df = Counter(w for d in docs for w in set(d))
    n = len(docs)
    idf = np.zeros(len(vocab), dtype=np.float32)
    for w, i in vocab.items():
        idf[i] = math.log((1 + n) / (1 + df[w])) + 1

    def vector(tokens: list[str]) -> np.ndarray:
        v = np.zeros(len(vocab), dtype=np.float32)
        for w, c in Counter(tokens).items():
            if w in vocab:
                v[vocab[w]] = (1 + math.log(c)) * idf[vocab[w]]
        norm = np.linalg.norm(v)
        return v / norm if norm else v

    matrix = np.stack([vector(d) for d in docs])
    ids = [r["id"] for r in rows]
    r1 = r5 = 0
    for text, intent in queries:
        scores = matrix @ vector(words(text))
        order = np.argsort(-scores)[:5]
        ranked = [ids[i] for i in order]
        r1 += ranked[0] == intent
        r5 += intent in ranked
    return {"recall_at_1": round(r1 / len(queries), 4), "recall_at_5": round(r5 / len(queries), 4)}


def run_banking() -> dict[str, Any]:
    test = _banking("test.csv")
    out: dict[str, Any] = {"queries": len(test), "intents": 77, "seed": 0}
    for label, n_alt in (("alternates_5", 5), ("alternates_all", None)):
        rows = banking_rows(n_alt)
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            (tmp / "kb").mkdir()
            _write_jsonl(tmp / "kb" / "banking77.jsonl", rows)
            settings = _settings(tmp)
            started = time.perf_counter()
            report = build_index(settings, [tmp / "kb"], progress=False)
            build_s = time.perf_counter() - started
            retriever = open_retriever(settings)
            latencies: list[float] = []

            def search(query: str, k: int, _r: Any = retriever, _l: list[float] = latencies) -> Any:
                t0 = time.perf_counter()
                result = _r.search_sync(query, k=k)
                _l.append((time.perf_counter() - t0) * 1000)
                return result

            result = evaluate([EvalCase(q, [c]) for q, c in test], search)
        out[label] = {
            "entries": report.entries,
            "phrasings": report.keys,
            "build_s": round(build_s, 1),
            "assistant": {k: v for k, v in result.to_json().items() if k != "misses"},
            "tfidf_baseline": _tfidf_baseline(rows, test),
            "search_ms_p50": round(_percentile(latencies, 0.5), 2),
            "search_ms_p95": round(_percentile(latencies, 0.95), 2),
        }
        print(f"banking77 {label}: {json.dumps(out[label])}", file=sys.stderr)
    out["targets"] = {"alternates_5_recall_at_1": 0.80, "alternates_all_recall_at_1": 0.92}
    return out


def _fit_fusion(xs: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> np.ndarray:
    """Non-negative weights of a conditional logit over each query's entries; ``xs`` is (queries,
    entries, signals), ``y`` the right entry of each query."""
    from scipy.optimize import minimize

    rows = np.arange(len(y))

    def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = xs @ w
        z -= z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        target = np.zeros_like(z)
        target[rows, y] = 1.0
        grad = np.einsum("qes,qe->s", xs, np.exp(log_p) - target) / len(y) + l2 * w
        return float(-log_p[rows, y].mean() + 0.5 * l2 * w @ w), grad

    bounds = [(0.0, None)] * xs.shape[2]
    return np.asarray(minimize(loss_grad, np.ones(xs.shape[2]), jac=True, method="L-BFGS-B", bounds=bounds).x)



class WordLlamaView:
    """WordLlama (PyPI ``wordllama`` 0.4.0.post1, MIT): static token embeddings (32,000 x 256, from the
    Llama-2 tokenizer's vocabulary) with mean pooling, tried as a second dense view beside the
    embedder in ``run_banking_ablation``. Not used by the assistant: refitted fusions on BANKING77 (5
    alternates) gained +0.8 points of recall@1 on dev (two-fold, 0.779 -> 0.787) and +0.9 on test
    (0.787 -> 0.796), under the +1.5 dev points that shipping a second model was to be worth.

    Built from the wheel's own files: ``WordLlama.load`` looks for the tokenizer under
    ``tokenizer/`` while the wheel has ``tokenizers/``, and then downloads it from Hugging Face. The
    ``wordllama`` package is not even imported (its ``__init__`` sets up the root logger)."""

    WEIGHTS = ("weights", "l2_supercat_256.safetensors")
    TOKENIZER = ("tokenizers", "l2_supercat_tokenizer_config.json")

    def __init__(self, folder: Path) -> None:
        from safetensors import safe_open
        from tokenizers import Tokenizer

        with safe_open(str(folder.joinpath(*self.WEIGHTS)), framework="np", device="cpu") as f:
            self.table = np.ascontiguousarray(f.get_tensor("embedding.weight"), dtype=np.float32)
        self.tokenizer = Tokenizer.from_file(str(folder.joinpath(*self.TOKENIZER)))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(512)

    @classmethod
    def load(cls) -> WordLlamaView | None:
        """The view from the installed package's files, or None when ``wordllama`` is not installed."""
        import importlib.util

        spec = importlib.util.find_spec("wordllama")  # locates the package without running it
        for location in (spec.submodule_search_locations or []) if spec else []:
            folder = Path(location)
            if folder.joinpath(*cls.WEIGHTS).is_file() and folder.joinpath(*cls.TOKENIZER).is_file():
                return cls(folder)
        return None

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length mean-pooled vectors (zeros for text with no tokens)."""
        out = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        for i, enc in enumerate(self.tokenizer.encode_batch(texts, add_special_tokens=False)):
            if enc.ids:
                v = self.table[np.clip(enc.ids, 0, len(self.table) - 1)].mean(axis=0)
                out[i] = v / max(float(np.linalg.norm(v)), 1e-9)
        return out


def run_banking_ablation(dev_size: int = 1500) -> dict[str, Any]:
    """Which scoring of an FAQ entry ranks BANKING77 (5 alternates) best: each signal alone, the
    shipped fusion, and fusions refitted on a *dev* split (training queries that are not alternates;
    test.csv is only ever evaluated). Signals per entry: the best phrasing cosine (``max``), the mean
    of the two best (``top2``), the mean over all phrasings (``mean``), the centre of the phrasings
    (``proto``), the same centre after whitening the knowledge base's phrasing vectors
    (``proto_whitened``), BM25 (``lexical``) and the build-time classifier (``classifier``).

    With ``wordllama`` installed, a second dense view (``WordLlamaView``, its vectors centred on the
    knowledge base's mean phrasing): its best phrasing (``wl_max``) and centre (``wl_proto``)
    cosines, a classifier trained like the built one on the two views side by side
    (``classifier_two_views``: [embedder; 0.7 x WordLlama], weight chosen on dev) and one on WordLlama
    alone (``classifier_wl``). Each refitted fusion also gets ``dev_2fold``: fitted on one half of
    dev, scored on the other, both ways, averaged (dev figures that were not fitted on themselves)."""
    from assistant.kb import calibration as cal
    from assistant.kb import classifier as entry_classifier

    rows = banking_rows(5)
    used = {a for r in rows for a in r["alternates"]}
    held = [(q, c) for q, c in _banking("train.csv") if q not in used]
    random.Random(3).shuffle(held)
    splits = {"dev": held[:dev_size], "test": _banking("test.csv")}
    out: dict[str, Any] = {"dev_queries": dev_size, "test_queries": len(splits["test"])}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "kb").mkdir()
        _write_jsonl(tmp / "kb" / "banking77.jsonl", rows)
        settings = _settings(tmp)
        build_index(settings, [tmp / "kb"], progress=False)
        kb = open_retriever(settings).kb
        ids = [r.id for r in kb.records]
        keys = kb._vectors
        owner = kb._key_record
        n = len(ids)
        proto = np.stack([keys[owner == r].mean(axis=0) for r in range(n)])
        proto /= np.linalg.norm(proto, axis=1, keepdims=True)
        centre = keys.mean(axis=0)
        _, sv, vt = np.linalg.svd(keys - centre, full_matrices=False)
        whiten = vt.T / np.sqrt(sv**2 / len(keys) + 0.05)

        def unit(v: np.ndarray) -> np.ndarray:
            return np.asarray(v / np.linalg.norm(v, axis=-1, keepdims=True))

        keys_w = unit((keys - centre) @ whiten)
        proto_w = unit(np.stack([keys_w[owner == r].mean(axis=0) for r in range(n)]))
        signals: dict[str, dict[str, np.ndarray]] = {}
        truth: dict[str, np.ndarray] = {}
        shipped: dict[str, float] = {}
        view = WordLlamaView.load()
        if view is not None:
            # Trained as index._train_classifier trains the built one: phrasings and answers, n-grams.
            key_texts = [k for r in kb.records for k in r.keys]
            answer_texts = [str(r.answer) for r in kb.records]
            raw = view.embed(key_texts)
            wl_centre = raw.mean(axis=0)

            def wl(texts: list[str]) -> np.ndarray:
                return unit(view.embed(texts) - wl_centre)

            wl_keys, wl_answers = unit(raw - wl_centre), wl(answer_texts)
            wl_proto = unit(np.stack([wl_keys[owner == r].mean(axis=0) for r in range(n)]))
            answers = np.load(kb.generation / "answers.npy")
            labels = np.concatenate([owner, np.arange(n)])
            both = np.concatenate([np.hstack([keys, 0.7 * wl_keys]), np.hstack([answers, 0.7 * wl_answers])])
            clf_both = entry_classifier.train(both, labels, n, np.arange(n), key_texts + answer_texts)
            clf_wl = entry_classifier.train(np.concatenate([wl_keys, wl_answers]), labels, n, np.arange(n))
        for split, queries in splits.items():
            texts = [q for q, _ in queries]
            truth[split] = np.array([ids.index(c) for _, c in queries])
            q = kb.embedder.embed(texts)
            sim = q @ keys.T
            per = [np.sort(sim[:, owner == r], axis=1) for r in range(n)]
            lexical = np.stack([kb._lexical.normalized_scores(t) for t in texts])
            assert kb._classifier is not None
            probs = np.stack([kb._classifier.probabilities(kb._classifier_input(t, v), t) for v, t in zip(q, texts, strict=True)])
            signals[split] = {
                "max": np.stack([p[:, -1] for p in per], axis=1),
                "top2": np.stack([p[:, -2:].mean(axis=1) for p in per], axis=1),
                "mean": np.stack([p.mean(axis=1) for p in per], axis=1),
                "proto": q @ proto.T,
                "proto_whitened": unit((q - centre) @ whiten) @ proto_w.T,
                "lexical": np.stack([lexical[:, owner == r].max(axis=1) for r in range(n)], axis=1),
                "classifier": cal.classifier_signal(probs),
            }
            if view is not None:
                qw = wl(texts)
                sim_w = qw @ wl_keys.T
                both_q = np.hstack([q, 0.7 * qw])
                signals[split].update(
                    wl_max=np.stack([sim_w[:, owner == r].max(axis=1) for r in range(n)], axis=1),
                    wl_proto=qw @ wl_proto.T,
                    classifier_two_views=cal.classifier_signal(
                        np.stack([clf_both.probabilities(v, t) for v, t in zip(both_q, texts, strict=True)])
                    ),
                    classifier_wl=cal.classifier_signal(np.stack([clf_wl.probabilities(v) for v in qw])),
                )
            hits = 0
            for text, vec, right in zip(texts, q, truth[split], strict=True):
                rec, x = kb.features(text, vec)
                hits += bool(int(rec[int(np.argmax(kb.calibration.scores(x)))]) == right)
            shipped[split] = round(hits / len(texts), 4)

    def recall(score: np.ndarray, split: str) -> float:
        return round(float((score.argmax(axis=1) == truth[split]).mean()), 4)

    table: dict[str, Any] = {"shipped fusion (assistant search)": shipped}
    for name in signals["dev"]:
        table[f"{name} alone"] = {split: recall(signals[split][name], split) for split in splits}
    fusions = {
        "classifier+max+proto+lexical": ["classifier", "max", "proto", "lexical"],
        "classifier+max+proto+lexical+top2+mean": ["classifier", "max", "proto", "lexical", "top2", "mean"],
        "classifier+max+proto_whitened+lexical": ["classifier", "max", "proto_whitened", "lexical"],
        "all signals": [k for k in signals["dev"] if not k.startswith(("wl_", "classifier_"))],
    }
    if "wl_max" in signals["dev"]:
        fusions.update(
            {
                "classifier+max+proto+lexical+wl_max+wl_proto": ["classifier", "max", "proto", "lexical", "wl_max", "wl_proto"],
                "classifier+classifier_wl+max+proto+lexical": ["classifier", "classifier_wl", "max", "proto", "lexical"],
                "classifier+classifier_wl+max+proto+lexical+wl_max+wl_proto": [
                    "classifier", "classifier_wl", "max", "proto", "lexical", "wl_max", "wl_proto"
                ],
                "classifier_two_views+max+proto+lexical": ["classifier_two_views", "max", "proto", "lexical"],
                "classifier_two_views+max+proto+lexical+wl_max+wl_proto": [
                    "classifier_two_views", "max", "proto", "lexical", "wl_max", "wl_proto"
                ],
            }
        )
    half = len(truth["dev"]) // 2
    folds = (slice(0, half), slice(half, None))
    for label, names in fusions.items():
        xs = {s: np.stack([signals[s][k] for k in names], axis=2) for s in splits}
        w = _fit_fusion(xs["dev"], truth["dev"])
        row: dict[str, Any] = {s: recall(xs[s] @ w, s) for s in splits}
        hits = 0
        for fit_on, score_on in (folds, folds[::-1]):
            w_half = _fit_fusion(xs["dev"][fit_on], truth["dev"][fit_on])
            hits += int(((xs["dev"][score_on] @ w_half).argmax(axis=1) == truth["dev"][score_on]).sum())
        row["dev_2fold"] = round(hits / len(truth["dev"]), 4)
        row["weights_fitted_on_dev"] = dict(zip(names, np.round(w, 3).tolist(), strict=True))
        table[f"refit on dev: {label}"] = row
    out["recall_at_1"] = table
    for label, row in table.items():
        print(f"banking77 ablation {label}: {row}", file=sys.stderr)
    return out


# --------------------------------------------------------------------------------------------
# Debian FAQ
# --------------------------------------------------------------------------------------------


def run_debian() -> dict[str, Any]:
    out: dict[str, Any] = {}
    sets = {
        "en": sorted(FAQ_DIR.glob("*.en.html")),
        "zh-cn": sorted((FAQ_DIR / "zh-cn").glob("*.zh-cn.html")),
    }
    if not sets["en"] or not sets["zh-cn"]:
        return {"error": "install the Debian packages debian-faq and debian-faq-zh-cn"}
    for lang, pages in sets.items():
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            kb = tmp / "kb"
            kb.mkdir()
            for page in pages:
                if page.name.startswith("index."):
                    continue  # the table of contents would answer everything with nothing
                shutil.copy(page, kb / page.name)
            settings = _settings(tmp)
            report = build_index(settings, [kb], progress=False)
            retriever = open_retriever(settings)
            suffix = ".en.html" if lang == "en" else ".zh-cn.html"
            runs = {"en": [("en_queries", DEBIAN_EN)], "zh-cn": [("zh_queries", DEBIAN_ZH), ("en_queries_crosslingual", DEBIAN_EN)]}
            block: dict[str, Any] = {"pages": report.files, "chunks": report.chunks, "skipped": len(report.skipped)}
            for name, queries in runs[lang]:
                cases = [EvalCase(q, [f"kb/{stem}{suffix}"]) for q, stem in queries]
                result = evaluate(cases, lambda q, k, _r=retriever: _r.search_sync(q, k=k))  # type: ignore[misc]
                summary = result.to_json()
                summary["misses"] = [m["query"] for m in summary["misses"]]
                block[name] = summary
            out[lang] = block
            print(f"debian {lang}: {json.dumps(block, ensure_ascii=False)}", file=sys.stderr)
    return out


# --------------------------------------------------------------------------------------------
# Scale
# --------------------------------------------------------------------------------------------


def _reference_sentences() -> list[str]:
    from assistant.kb.chunking import split_sentences

    seen: dict[str, None] = {}
    files = sorted(REFERENCE_DIR.glob("*.txt.gz")) + sorted(FAQ_DIR.glob("*.txt.gz"))
    for path in files:
        text = gzip.open(path, "rt", encoding="utf-8", errors="replace").read()
        for para in re.split(r"\n\s*\n", text):
            for s in split_sentences(" ".join(para.split())):
                if 15 <= len(s) <= 200:
                    seen[s] = None
    return list(seen)


def _scale_pairs(n: int, n_sentences: int, seed: int = 1) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    out: dict[tuple[int, int], None] = {}
    while len(out) < n:
        a, b = rng.sample(range(n_sentences), 2)
        out[(a, b)] = None
    return list(out)


class ComposedEmbedder:
    """Embeds a scale passage ("sentence A sentence B") as the normalised sum of its two sentences'
    real USE vectors, computed once; anything else goes to the real encoder. Same identity as USE, so
    the index it builds is searched by the real query encoder. It makes a 100k-passage index buildable
    on 2 shared cores in minutes; embedding throughput is measured separately with the real encoder."""

    def __init__(self, real: Any, sentences: list[str], vectors: np.ndarray) -> None:
        self.real = real
        self.sentences = sentences
        self.vectors = vectors
        self.pairs: dict[str, tuple[int, int]] = {}

    @property
    def identity(self) -> str:
        return str(self.real.identity)

    @property
    def dimensions(self) -> int:
        return int(self.real.dimensions)

    def embed(self, texts: Any) -> np.ndarray:
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for i, text in enumerate(texts):
            pair = self.pairs.get(text)
            if pair is None:
                out[i] = self.real.embed([text])[0]
            else:
                v = self.vectors[pair[0]] + self.vectors[pair[1]]
                out[i] = v / np.linalg.norm(v)
        return out


def run_scale(sizes: list[int], save: Any = None) -> dict[str, Any]:
    from assistant.engines.use_embedder import USEEmbedder

    sentences = _reference_sentences()
    queries = [q for q, _ in DEBIAN_EN] + [q for q, _ in DEBIAN_ZH]
    queries += [q for q, _ in random.Random(2).sample(_banking("test.csv"), 135)]
    real = USEEmbedder()
    real.embed(["warm-up"])
    out: dict[str, Any] = {
        "corpus": f"{len(sentences)} Debian Reference/FAQ sentences (en, zh-cn), paired at random into passages",
        "queries": len(queries),
        "method": "passage vectors = normalised sum of the two sentences' real USE vectors (ComposedEmbedder); "
        "queries embedded by the real encoder; embedding throughput measured on real passages below",
    }
    # Real end-to-end embedding throughput on real passages (what a build spends most of its time on).
    sample_pairs = _scale_pairs(512, len(sentences), seed=9)
    sample = [f"{sentences[a]} {sentences[b]}" for a, b in sample_pairs]
    t0 = time.perf_counter()
    for i in range(0, len(sample), 256):
        real.embed(sample[i : i + 256])
    embed_rate = len(sample) / (time.perf_counter() - t0)
    out["embedding_passages_per_s"] = round(embed_rate, 1)
    t0 = time.perf_counter()
    vectors = np.concatenate([real.embed(sentences[i : i + 256]) for i in range(0, len(sentences), 256)])
    out["sentence_embedding_s"] = round(time.perf_counter() - t0, 1)
    composed = ComposedEmbedder(real, sentences, vectors)
    for n in sizes:
        pairs = _scale_pairs(n, len(sentences))
        passages = [f"{sentences[a]} {sentences[b]}" for a, b in pairs]
        composed.pairs = dict(zip(passages, pairs, strict=True))
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            (tmp / "kb").mkdir()
            _write_jsonl(
                tmp / "kb" / "passages.jsonl",
                [{"id": f"p{i}", "question": p, "answer": f"passage {i}"} for i, p in enumerate(passages)],
            )
            settings = _settings(tmp)
            before = _rss_mb()
            started = time.perf_counter()
            report = build_index(settings, [tmp / "kb"], progress=False, embedder=composed)
            construct_s = time.perf_counter() - started
            after_build = _rss_mb()
            retriever = open_retriever(settings, embedder=real)
            loaded = _rss_mb()
            for q in queries[:5]:
                retriever.search_sync(q, k=5)  # warm caches
            latencies = []
            cpu = []
            for q in queries:
                t0 = time.perf_counter()
                c0 = time.process_time()
                retriever.search_sync(q, k=5)
                cpu.append((time.process_time() - c0) * 1000)
                latencies.append((time.perf_counter() - t0) * 1000)
            size = sum(p.stat().st_size for p in (tmp / "index").rglob("*") if p.is_file())
            estimated = construct_s + n / embed_rate
            row = {
                "passages": report.keys,
                "index_type": report.index_type,
                "index_construction_s": round(construct_s, 1),
                "estimated_build_s_with_embedding": round(estimated, 1),
                "estimated_build_passages_per_s": round(n / estimated, 1),
                "query_ms_p50": round(_percentile(latencies, 0.5), 2),
                "query_ms_p95": round(_percentile(latencies, 0.95), 2),
                "query_ms_mean": round(statistics.fmean(latencies), 2),
                # CPU time of the query (single-threaded search): what the wall time would be on an
                # idle core; the wall time above includes waiting for a core on a shared machine.
                "query_cpu_ms_p50": round(_percentile(cpu, 0.5), 2),
                "query_cpu_ms_p95": round(_percentile(cpu, 0.95), 2),
                "index_size_mb": round(size / 1e6, 1),
                "rss_mb_before_build": before["rss_mb"],
                "rss_mb_after_build": after_build["rss_mb"],
                "rss_mb_index_loaded": loaded["rss_mb"],
                "peak_rss_mb": loaded["peak_rss_mb"],
                "load_avg_1min": round(os.getloadavg()[0], 2),
            }
            del retriever
        out[str(n)] = row
        print(f"scale {n}: {json.dumps(row)}", file=sys.stderr)
        if save is not None:
            save(out)  # a 100k build takes long: keep what is measured so far
    out["target"] = {"query_ms_p95_at_100000": 20.0}
    return out


# --------------------------------------------------------------------------------------------
# Calibration: labelled (query, candidate) pairs from real data -> calibration.fit
# --------------------------------------------------------------------------------------------

SAMPLE_KB = ROOT / "kb"

# Questions a front desk hears that the sample knowledge base does not answer (negatives only).
OFF_TOPIC = [
    "火星上今天天气怎么样", "明天会下雨吗", "给我讲个笑话", "世界杯冠军是谁", "附近有什么好吃的餐厅",
    "今天股市怎么样", "你会唱歌吗", "帮我订一张去巴黎的机票", "怎么做红烧肉", "地球到月球有多远",
    "what's the weather on Mars", "tell me a joke", "who won the world cup", "what is the capital of France",
    "how do I bake bread", "recommend a good movie", "what's the stock price of Apple", "how far is the moon",
    "can you sing a song", "book me a flight to Paris",
]

# Questions the sample documents answer: (query, a phrase only the answering chunk contains).
DOC_QUERIES = [
    ("where is the fire assembly point", "assembly point"),
    ("what is not allowed through security", "Knives, lighters"),
    ("which floor is human resources on", "Human Resources"),
    ("can I borrow an umbrella", "Umbrellas"),
    ("can I take photos in the building", "Photography"),
    ("where do taxis drop visitors off", "drop off at the east gate"),
    ("忘记打卡怎么办", "补卡"),
    ("加班可以调休吗", "调休"),
    ("公司电脑能用U盘吗", "U盘"),
    ("每年的培训预算是多少", "2000元"),
    ("消防演练什么时候", "消防演练"),
    ("电话间需要预订吗", "电话间"),
    ("客户资料可以放在哪里", "海桥云盘"),
    ("收到可疑邮件怎么办", "可疑邮件"),
]


# Questions that need two entries of the sample knowledge base (both are right answers). Written for
# the calibration; the travel hotel + per-diem pair is kept out on purpose (tests ask about it).
COMBINED_QUERIES = [
    ("访客来了怎么登记，车停在哪里，停车收费多少", ["visitor-register", "parking-visitor"]),
    ("客人怎么上网，中午能在食堂吃饭吗", ["wifi-guest", "meal-subsidy"]),
    ("新员工第一天去哪报到，办公室的无线网怎么连", ["badge-new", "wifi-staff"]),
    ("怎么订会议室，人多的话星海厅怎么申请", ["meeting-room", "auditorium"]),
    ("忘记密码了，在家也连不上内网", ["password-reset", "vpn"]),
    ("年假有几天，请病假需要什么材料", ["annual-leave", "sick-leave"]),
    ("食堂几点开门，每天有多少餐补", ["canteen", "meal-subsidy"]),
    ("滴滴怎么下载，加班晚了打车能报销吗", ["didi-app", "didi-rules"]),
    ("报销流程是什么，请客户吃饭有什么标准", ["expense", "entertainment"]),
    ("How do visitors sign in, and where can they park?", ["visitor-register", "parking-visitor"]),
    ("When is the canteen open and is there a lunch subsidy?", ["canteen", "meal-subsidy"]),
    ("I forgot my password and can't reach the company network from home", ["password-reset", "vpn"]),
    ("How many vacation days do I get, and how do I take sick leave?", ["annual-leave", "sick-leave"]),
    ("How do I book a meeting room, and the big hall for an event?", ["meeting-room", "auditorium"]),
    ("How do I install DiDi and when may I use it for work?", ["didi-app", "didi-rules"]),
]


# Questions about a detail that only an FAQ entry's answer holds (none of its phrasings says it):
# (query, the entry's topic). Written for the calibration, on details that the faithfulness
# questions (bench/faithfulness.jsonl) do not ask about, so that set still measures them.
ANSWER_DETAIL_QUERIES = [
    ("访客网络连上以后能用多久", "wifi-guest"),
    ("一个人最多能连几台设备上公司网络", "wifi-staff"),
    ("地下车库的充电桩怎么收费", "parking-staff"),
    ("IT服务台的邮箱是什么", "it-helpdesk"),
    ("账号被锁了多久会自动解开", "password-reset"),
    ("彩色打印需要谁批准", "printing"),
    ("报销款多久能到账", "expense"),
    ("请客户吃饭人均最多能报多少", "entertainment"),
    ("公司的税号是多少", "invoice-info"),
    ("顺丰每天几点来收件", "courier"),
    ("失物招领的东西会保留多久", "lost-found"),
    ("健身房晚上几点关门", "gym"),
    ("吸烟区在哪里", "smoking"),
    ("除颤器放在哪里", "emergency"),
    ("出差坐飞机能坐什么舱位", "travel-policy"),
    ("去实验室参观要签什么", "visitor-escort"),
    ("被访员工要提前多久给访客预约", "visitor-register"),
    ("新员工第一天几点去报到", "badge-new"),
    ("外卖柜在大堂哪一边", "delivery"),
    ("管理员后台要用哪个App做二次验证", "admin-console"),
    ("工资条在哪里看", "payroll"),
    ("考勤以什么为准", "working-hours"),
    ("How long does guest Wi-Fi access last?", "wifi-guest"),
    ("How many devices can I connect to the staff Wi-Fi?", "wifi-staff"),
    ("What does it cost to charge an electric car in the garage?", "parking-staff"),
    ("What's the IT help desk's email address?", "it-helpdesk"),
    ("How long until a locked account unlocks by itself?", "password-reset"),
    ("Who has to approve colour printing?", "printing"),
    ("How soon is an approved expense claim paid out?", "expense"),
    ("What's the per-person limit when I take clients out?", "entertainment"),
    ("How long are lost items kept?", "lost-found"),
    ("What time does the gym close?", "gym"),
    ("Where is the defibrillator?", "emergency"),
    ("What class can I fly on a business trip?", "travel-policy"),
    ("Do I need receipts for the per diem?", "travel-perdiem"),
    ("By when must a host book a visitor in?", "visitor-register"),
    ("What time should a new employee arrive on the first day?", "badge-new"),
    ("Where are the delivery lockers?", "delivery"),
    ("Which app confirms an admin console sign-in?", "admin-console"),
    ("Where can I see my payslip?", "payroll"),
    ("How is attendance recorded?", "working-hours"),
    ("What do visitors have to sign to enter the labs?", "visitor-escort"),
]


# Questions a visitor or employee could well ask at this front desk that the sample knowledge base
# does not answer (negatives only): near misses, unlike OFF_TOPIC, sharing words and topics with
# entries that exist (a holiday party is not the holidays entry). Written for the calibration, on
# topics the faithfulness questions' unanswerable ones (bench/faithfulness.jsonl) do not use.
UNANSWERED_IN_DOMAIN = [
    "公司有年会吗", "怎么申请内部转岗", "公司提供住房补贴吗", "每年的体检什么时候安排", "可以带宠物来办公室吗",
    "试用期有多长", "离职手续怎么办", "公司有幼儿园吗", "团建经费有多少", "晋升评审一年几次",
    "Is there a company holiday party?", "How do I apply for an internal transfer?", "Does the company offer a housing allowance?",
    "When is the annual health check-up?", "Can I bring my dog to the office?", "How long is the probation period?",
    "How do I resign?", "Does the company offer childcare?", "What's the team-building budget?", "How often are promotions reviewed?",
]


def _topic(entry_id: str) -> str:
    return entry_id.split("-", 1)[1] if entry_id[:3] in ("zh-", "en-") else entry_id


def _sample_rows() -> list[dict[str, Any]]:
    rows = []
    with (SAMPLE_KB / "faq_zh.csv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            alternates = [a for a in r["alternates"].split("|") if a]
            rows.append({"id": r["id"], "question": r["question"], "answer": r["answer"], "alternates": alternates})
    with (SAMPLE_KB / "faq_en.jsonl").open(encoding="utf-8") as f:
        rows += [json.loads(line) for line in f if line.strip()]
    return rows


Group = tuple[list[np.ndarray], list[np.ndarray], list[float]]
"""A labelled query set: per query its candidates' features, their labels and its novelty."""


def _pairs(retriever: Any, queries: list[tuple[str, Any]], is_positive: Any) -> Group:
    xs, ys, ns = [], [], []
    kb = retriever.kb
    for query, expected in queries:
        rec, x = kb.features(query)
        xs.append(x)
        ys.append(np.array([is_positive(kb.records[int(r)], expected) for r in rec], dtype=np.float64))
        ns.append(kb.novelty(query))
    return xs, ys, ns


def run_calibration() -> dict[str, Any]:
    """Fit ``assistant.kb.calibration`` on labelled pairs: every candidate each query meets, labelled
    correct or not. Query sets: BANKING77 held-out training queries (5 alternates, and half of the
    training set as alternates), the sample knowledge base with one alternate left out per entry
    (three folds), English <-> Chinese across the sample's two FAQ tables, document questions,
    questions about details of FAQ answers (``ANSWER_DETAIL_QUERIES``), and off-topic and
    in-domain unanswered questions (``OFF_TOPIC``, ``UNANSWERED_IN_DOMAIN``: negatives). A query set weighs the square root of its size in the fit."""

    groups: dict[str, Group] = {}

    def build(tmp: Path, files: dict[str, list[dict[str, Any]]], docs: bool = False) -> Any:
        kb = tmp / "kb"
        kb.mkdir(parents=True)
        for name, rows in files.items():
            _write_jsonl(kb / name, rows)
        if docs:
            shutil.copytree(SAMPLE_KB / "docs", kb / "docs")
        settings = _settings(tmp)
        build_index(settings, [kb], progress=False)
        return open_retriever(settings)

    def same_id(rec: Any, exp: Any) -> bool:
        return bool(rec.id == exp)

    def same_topic(rec: Any, exp: Any) -> bool:
        return rec.kind == "faq" and _topic(rec.id) == _topic(exp)

    def never(rec: Any, exp: Any) -> bool:
        return False

    def phrase_in_chunk(rec: Any, phrase: Any) -> bool:
        return rec.kind == "document" and phrase in rec.text

    train = _banking("train.csv")
    company = _sample_rows()
    with tempfile.TemporaryDirectory() as t:
        rows = banking_rows(5)
        used = {a for r in rows for a in r["alternates"]}
        held = [(q, c) for q, c in train if q not in used]
        random.Random(3).shuffle(held)
        r5 = build(Path(t) / "b5", {"b.jsonl": rows})
        groups["banking77_5"] = _pairs(r5, held[:600], same_id)
        groups["off_topic_vs_banking"] = _pairs(r5, [(r["question"], None) for r in company] + [(q, None) for q in OFF_TOPIC], never)
        by: dict[str, list[str]] = {}
        for q, c in train:
            by.setdefault(c, []).append(q)
        half_rows = [{"id": c, "question": c.replace("_", " ") + "?", "answer": "-", "alternates": qs[::2]} for c, qs in by.items()]
        half_queries = [(q, c) for c, qs in by.items() for q in qs[1::2][:5]]
        rh = build(Path(t) / "bh", {"b.jsonl": half_rows})
        groups["banking77_half"] = _pairs(rh, half_queries, same_id)
        held_xs: list[np.ndarray] = []
        held_ys: list[np.ndarray] = []
        held_ns: list[float] = []
        for fold in range(3):
            kept, queries = [], []
            for r in company:
                alts = list(r["alternates"])
                if len(alts) > fold:
                    queries.append((alts.pop(fold), r["id"]))
                kept.append({**r, "alternates": alts})
            rf = build(Path(t) / f"f{fold}", {"faq.jsonl": kept}, docs=True)
            xs, ys, ns = _pairs(rf, queries, same_topic)
            held_xs += xs
            held_ys += ys
            held_ns += ns
            if fold == 0:
                groups["combined_questions"] = _pairs(
                    rf, COMBINED_QUERIES, lambda rec, topics: rec.kind == "faq" and _topic(rec.id) in topics
                )
                groups["off_topic_vs_sample"] = _pairs(rf, [(q, None) for q in OFF_TOPIC] + [(q, None) for q, _ in held[600:800]], never)
                groups["unanswered_in_domain"] = _pairs(rf, [(q, None) for q in UNANSWERED_IN_DOMAIN], never)
                groups["documents"] = _pairs(rf, DOC_QUERIES, phrase_in_chunk)
                groups["answer_details"] = _pairs(rf, ANSWER_DETAIL_QUERIES, lambda rec, topic: same_topic(rec, f"zh-{topic}"))
        groups["sample_kb_held_out"] = (held_xs, held_ys, held_ns)
        zh_rows = [r for r in company if r["id"].startswith("zh-")]
        en_rows = [r for r in company if r["id"].startswith("en-")]
        rz = build(Path(t) / "zh", {"faq.jsonl": zh_rows})
        ren = build(Path(t) / "en", {"faq.jsonl": en_rows})
        xs, ys, ns = _pairs(rz, [(r["question"], r["id"]) for r in en_rows], same_topic)
        xs2, ys2, ns2 = _pairs(ren, [(r["question"], r["id"]) for r in zh_rows], same_topic)
        groups["cross_lingual"] = (xs + xs2, ys + ys2, ns + ns2)

    import pickle

    with (RESULTS.parent / "calibration_pairs.pkl").open("wb") as f:
        pickle.dump(groups, f)  # the labelled features, to refit without rebuilding (--only refit)
    return fit_calibration(groups)


def fit_calibration(groups: dict[str, Group], *, use_lead: bool = True, use_novelty: bool = True) -> dict[str, Any]:
    from assistant.kb import calibration

    xs_all: list[np.ndarray] = []
    ys_all: list[np.ndarray] = []
    ns_all: list[float] = []
    weights: list[float] = []
    summary = {}
    for name, (xs, ys, ns) in groups.items():
        xs_all += xs
        ys_all += ys
        ns_all += ns
        # A query set weighs the square root of its size: bigger sets count more, but BANKING77's
        # hundreds of queries cannot drown the sample knowledge base's documents and Chinese.
        weights += [math.sqrt(len(xs)) / len(xs)] * len(xs)
        summary[name] = {"queries": len(xs), "pairs": int(sum(len(y) for y in ys)), "positives": int(sum(y.sum() for y in ys))}
    fitted = calibration.fit_two_stage(
        xs_all, ys_all, weights, use_lead=use_lead, novelty=ns_all if use_novelty else None,
        source=f"fitted {time.strftime('%Y-%m-%d')} by bench/retrieval.py --only calibration",
    )  # fmt: skip
    per_group = {}
    top_scores_all: list[float] = []
    top_ok_all: list[int] = []
    for name, (xs, ys, ns) in groups.items():
        top_scores, top_ok = [], []
        for xq, yq, nq in zip(xs, ys, ns, strict=True):
            sq = fitted.scores(xq, novelty=nq)
            top_scores.append(float(sq.max()))
            top_ok.append(int(yq[int(np.argmax(sq))]))
        s_top = np.array(top_scores)
        ok = np.array(top_ok)
        top_scores_all += top_scores
        top_ok_all += top_ok
        per_group[name] = {
            "top1_correct": round(float(ok.mean()), 3),
            "share_at_or_above_faq_0.80": round(float((s_top >= 0.8).mean()), 3),
            "precision_at_or_above_faq_0.80": round(float(ok[s_top >= 0.8].mean()), 3) if (s_top >= 0.8).any() else None,
            "share_at_or_above_relevance_0.45": round(float((s_top >= 0.45).mean()), 3),
            "precision_at_or_above_relevance_0.45": round(float(ok[s_top >= 0.45].mean()), 3) if (s_top >= 0.45).any() else None,
        }
    return {
        "groups": summary,
        "calibration": fitted.to_json(),
        "reliability_top_result": calibration.reliability(top_scores_all, top_ok_all),
        "top_result_by_group": per_group,
    }


# --------------------------------------------------------------------------------------------
# Sample knowledge base: retrieval and routing for the faithfulness questions (no LLM)
# --------------------------------------------------------------------------------------------

RELEVANCE_SWEEP = (0.05, 0.1, 0.15, 0.2, 0.3, 0.45)
FAITHFULNESS_SETS = {
    "dev": ROOT / "bench" / "faithfulness.jsonl",
    "holdout": ROOT / "bench" / "faithfulness_holdout.jsonl",
}


def _evidence_has(content: str, alternatives: list[str]) -> bool:
    """A fact is in the evidence when one of its spellings is (``faithfulness.has_fact``), or, for a
    numeric fact, its number is: an English question may be answered from a Chinese passage ("4
    hours" from "4小时")."""
    sys.path.insert(0, str(ROOT / "bench"))
    from faithfulness import has_fact, normalise

    if has_fact(content, alternatives):
        return True
    numbers = re.findall(r"\d+(?:[.:]\d+)?", normalise(alternatives[0]))
    text = normalise(content)
    return bool(numbers) and all(re.search(rf"(?<![\d.:]){re.escape(n)}(?![\d]|[.:]\d)", text) for n in numbers)


def _content(passage: Any) -> str:
    return " ".join(t for t in (passage.title, passage.section, passage.text, passage.answer or "") if t)


def _ratio(hits: int, total: int) -> float:
    return round(hits / total, 3) if total else 0.0


def routing_report(items: list[dict[str, Any]], route: Any, settings: Any) -> dict[str, Any]:
    """Score retrieval and routing on faithfulness questions, without an LLM.

    ``route(item, settings)`` returns ``(RouteDecision, passages)`` for one question as the turn
    would make them. An answerable question is *grounded* when its route is not the fallback and
    every fact is in what the route answers from (the stored answer on ``faq``, the passages on
    ``generated``): the most a perfect model could get right. It is *reachable* when every fact is
    somewhere in the retrieved passages, whatever their scores. An unanswerable question should
    reach the fallback (or a model that declines); on ``faq`` it gets a wrong answer read out
    verbatim. ``relevance_sweep``: the same at other ``[answer] relevance_threshold`` values.
    """
    rows = []
    sweep: dict[float, list[tuple[bool | None, str]]] = {t: [] for t in RELEVANCE_SWEEP}
    for item in items:
        facts = item.get("facts") if item.get("answerable", True) else None
        decision, passages = route(item, settings)
        row: dict[str, Any] = {"id": item["id"], "route": decision.route, "top": [[p.id, p.kind, p.score] for p in passages[:3]]}
        if facts is not None:
            used = " ".join(_content(p) for p in decision.passages)
            retrieved = " ".join(_content(p) for p in passages)
            row["grounded"] = decision.route != "fallback" and all(_evidence_has(used, f) for f in facts)
            row["reachable"] = all(_evidence_has(retrieved, f) for f in facts)
        rows.append(row)
        for t in RELEVANCE_SWEEP:
            answer = dataclasses.replace(settings.answer, relevance_threshold=min(t, settings.answer.faq_threshold))
            d = route(item, dataclasses.replace(settings, answer=answer))[0]
            used = " ".join(_content(p) for p in d.passages)
            sweep[t].append((None if facts is None else d.route != "fallback" and all(_evidence_has(used, f) for f in facts), d.route))
    answerable = [r for r in rows if "grounded" in r]
    unanswerable = [r for r in rows if "grounded" not in r]
    return {
        "questions": len(rows),
        "answerable": len(answerable),
        "grounded": _ratio(sum(r["grounded"] for r in answerable), len(answerable)),
        "reachable": _ratio(sum(r["reachable"] for r in answerable), len(answerable)),
        "answerable_routes": dict(Counter(r["route"] for r in answerable)),
        "unanswerable": len(unanswerable),
        "unanswerable_fallback": _ratio(sum(r["route"] == "fallback" for r in unanswerable), len(unanswerable)),
        "unanswerable_faq_answered": sum(r["route"] == "faq" for r in unanswerable),
        "misses": [r for r in rows if not r.get("grounded", r["route"] != "faq")],
        "relevance_sweep": {
            str(t): {
                "grounded": _ratio(sum(bool(ok) for ok, _ in v if ok is not None), len(answerable)),
                "unanswerable_fallback": _ratio(sum(r == "fallback" for ok, r in v if ok is None), len(unanswerable)),
            }
            for t, v in sweep.items()
        },
    }


def run_sample() -> dict[str, Any]:
    """The faithfulness questions through retrieval and routing only (``routing_report``), over the
    sample ``kb/`` with the thresholds of ``assistant.toml``: the turn's own steps before the LLM
    (``prompts.rewrite_query`` with the question's history, ``search`` at ``[kb] top_k``, the
    question's parts, ``turn.decide_route``). ``dev`` is ``bench/faithfulness.jsonl`` (what the
    thresholds may be chosen on); ``holdout`` is ``bench/faithfulness_holdout.jsonl`` (never tuned on).
    """
    from assistant import prompts
    from assistant.kb.query import sub_questions
    from assistant.registry import load_settings as load
    from assistant.routing import decide_route
    from assistant.stages import Message

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        settings = load(ROOT / "assistant.toml")
        settings.kb.index_dir = str(Path(tmp_name) / "index")
        report = build_index(settings, [SAMPLE_KB], progress=False)
        retriever = open_retriever(settings)
        out["knowledge_base"] = {"entries": report.entries, "chunks": report.chunks}
        out["thresholds"] = {
            "faq": settings.answer.faq_threshold,
            "relevance": settings.answer.relevance_threshold,
            "top_k": settings.kb.top_k,
        }

        def route(item: dict[str, Any], chosen: Any) -> tuple[Any, list[Any]]:
            history = [Message(role, text) for role, text in item.get("history", [])]
            query = prompts.rewrite_query(item["question"], history)
            passages = retriever.search_sync(query, k=chosen.kb.top_k)
            parts = [retriever.search_sync(q, k=3) for q in sub_questions(query)]
            return decide_route(passages, chosen, parts=parts), passages

        for name, path in FAITHFULNESS_SETS.items():
            if path.exists():
                items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
                out[name] = routing_report(items, route, settings)
                brief = {k: v for k, v in out[name].items() if k != "misses"}
                print(f"sample {name}: {json.dumps(brief, ensure_ascii=False)}", file=sys.stderr)
    return out


def _save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["banking77", "banking77-ablation", "debian", "scale", "sample", "calibration", "refit"], action="append")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    parts = args.only or ["banking77", "debian", "sample", "scale"]
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["machine"] = {"cpus": os.cpu_count(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}
    for part in parts:
        started = time.perf_counter()
        if part == "banking77":
            results["banking77"] = run_banking()
        elif part == "debian":
            results["debian_faq"] = run_debian()
        elif part == "sample":
            results["sample_kb"] = run_sample()
        elif part == "banking77-ablation":
            results["banking77_ablation"] = run_banking_ablation()
        elif part == "calibration":
            results["calibration"] = run_calibration()
        elif part == "refit":
            import pickle

            with (RESULTS.parent / "calibration_pairs.pkl").open("rb") as f:
                results["calibration"] = fit_calibration(pickle.load(f))
        else:

            def save_partial(partial: dict[str, Any]) -> None:
                results["scale"] = partial
                _save(args.out, results)

            results["scale"] = run_scale(args.sizes, save_partial)
        results.setdefault("seconds", {})[part] = round(time.perf_counter() - started, 1)
        results.setdefault("commands", {})[part] = "bench/retrieval.py " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    _save(args.out, results)
    print(json.dumps(results, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
