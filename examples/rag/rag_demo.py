#!/usr/bin/env python3
"""A small RAG pipeline over kvc: BM25 retrieval (bm25s), the corpus precomputed into kvc's store, and
questions answered through the LangChain component.

    .venv/bin/python examples/rag/rag_demo.py --kvc-server build/bin/kvc-server   # starts and stops one
    .venv/bin/python examples/rag/rag_demo.py --server 127.0.0.1:50051             # or asks a running one

The corpus is every Markdown file in docs/samples and examples/rag/corpus, cut at its "## " headings into
one document per section. Precompute stores each document's full KV cache once; at question time the
retrieved documents are found in the store (no prefill of them), the question selects what to keep from
them, and kvc decodes the answer. --from-text compresses the retrieved texts instead (one prefill per
question, and on the packaged SmolLM2 more right answers: see examples/rag/README.md). A second run finds
everything stored.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pathlib
import re
import sys
import time

import bm25s
from langchain_core.documents import Document
from tqdm import tqdm

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
# Run from a source checkout without installing the client; the tests' server_process starts --kvc-server.
sys.path[:0] = [str(REPO / "client" / "python"), str(REPO / "client" / "python" / "tests")]

from kvc_client.integrations.langchain import KvcRunnable  # noqa: E402
from server_process import KvcServerProcess  # noqa: E402

CORPUS_DIRS = (REPO / "docs" / "samples", HERE / "corpus")
QUESTIONS = (
    "Who was the chief engineer of the Tessaly Valley Water Project?",
    "How many varieties does the Marlow Seed Bank store?",
    "When did the first passenger train run through the Ostra tunnel?",
)


@dataclasses.dataclass
class Section:
    id: str
    text: str


def load_corpus(dirs) -> list[Section]:
    """One document per "## " section of each Markdown file. The file's title heads every section, so a
    section that never names its subject ("Construction") still matches questions about it."""
    sections = []
    for path in sorted(p for d in dirs for p in d.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        title = text.splitlines()[0].lstrip("# ").strip()
        parts = re.split(r"^## ", text, flags=re.MULTILINE)
        if len(parts) == 1:
            sections.append(Section(path.stem, text.strip()))
            continue
        for part in parts[1:]:
            heading, _, body = part.partition("\n")
            slug = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")
            sections.append(Section(f"{path.stem}#{slug}", f"# {title}\n\n## {heading}\n{body.strip()}"))
    return sections


class Bm25:
    def __init__(self, sections: list[Section]):
        self.sections = sections
        self.index = bm25s.BM25()
        self.index.index(bm25s.tokenize([s.text for s in sections], stopwords="en", show_progress=False),
                         show_progress=False)

    def __call__(self, question: str, k: int) -> list[Document]:
        hits, _ = self.index.retrieve(bm25s.tokenize([question], stopwords="en", show_progress=False),
                                      k=min(k, len(self.sections)), show_progress=False)
        return [Document(page_content=self.sections[i].text, id=self.sections[i].id) for i in hits[0]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="localhost:50051", help="kvc-server address (default %(default)s)")
    parser.add_argument("--kvc-server", metavar="BINARY",
                        help="start this kvc-server on a free port (its embedded default model) and stop it at the end")
    parser.add_argument("--store", default="kvc-data",
                        help="with --kvc-server: the file store's directory (default %(default)s)")
    parser.add_argument("--token", help="bearer token, when the server wants one")
    parser.add_argument("--method", default="focus", help="compression method (default %(default)s)")
    parser.add_argument("--ratio", type=float, default=2.0, help="compression ratio (default %(default)s)")
    parser.add_argument("--top-k", type=int, default=2, help="documents retrieved per question (default %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=64, help="longest answer (default %(default)s)")
    parser.add_argument("--from-text", action="store_true",
                        help="compress the retrieved texts rather than select from the precomputed caches")
    parser.add_argument("questions", nargs="*", help="questions to ask (default: three about the corpus)")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        if args.kvc_server:
            print(f"rag: starting {args.kvc_server} with the store {args.store}", flush=True)
            server = stack.enter_context(KvcServerProcess(args.kvc_server, os.path.abspath(args.store)))
            server.wait_serving()
            args.server = server.address
            stack.callback(lambda: print(f"rag: kvc-server exited with {server.terminate()}"))
        return run(args)


def run(args) -> int:
    sections = load_corpus(CORPUS_DIRS)
    print(f"rag: corpus: {len(sections)} documents from " + ", ".join(str(d.relative_to(REPO)) for d in CORPUS_DIRS))
    kvc = KvcRunnable(args.server, token=args.token, method=args.method, ratio=args.ratio,
                      max_tokens=args.max_tokens, reuse_documents=not args.from_text)

    # One document per call, so that the bar moves and an interrupted run keeps what it stored.
    start, stored, tokens = time.monotonic(), 0, 0
    for section in tqdm(sections, desc="precompute", unit="doc", file=sys.stdout, ascii=True):
        result = kvc.answerer.precompute([{"text": section.text, "id": section.id}]).results[0]
        stored += result.cache_hit
        tokens += result.info.tokens_in
    print(f"rag: precompute: {len(sections)} documents, {tokens} tokens, {stored} already stored, "
          f"{time.monotonic() - start:.1f}s")

    retrieve = Bm25(sections)
    for question in args.questions or QUESTIONS:
        documents = retrieve(question, args.top_k)
        message = kvc.invoke({"documents": documents, "question": question})
        meta = message.response_metadata
        print(f"\nquestion: {question}")
        print(f"retrieved: {', '.join(d.id for d in documents)}")
        print(f"answer: {' '.join(message.content.split())}")  # one line, however the model broke it
        print(f"ratio: {meta['ratio']:.2f}x ({meta['tokens_in']} -> {meta['tokens_out']} tokens, {meta['method']}); "
              f"cache hits: {meta['document_cache_hits']}/{meta['documents']} documents, "
              f"compressed cache {'hit' if meta['cache_hit'] else 'miss'}; {meta['seconds']:.1f}s")
    kvc.answerer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
