"""examples/rag/rag_demo.py end to end, as the README runs it: the script starts kvc-server (KVC_SERVER_BIN) on
its embedded default model and stops it (label model: needs the binary, bm25s, tqdm and langchain-core).

The first run precomputes the whole corpus and answers three questions from the stored caches; the second,
on the same store, finds every document stored and every compressed cache too, and gives the same answers.
"""
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.model

SCRIPT = REPO / "examples" / "rag" / "rag_demo.py"
ANSWER = re.compile(r"^question: (?P<q>.+)\nretrieved: (?P<r>.+)\nanswer: (?P<a>.*)\n"
                    r"ratio: (?P<ratio>[\d.]+)x \((?P<tin>\d+) -> (?P<tout>\d+) tokens, focus\); "
                    r"cache hits: (?P<hits>\d)/(?P<docs>\d) documents, compressed cache (?P<cache>hit|miss); ",
                    re.MULTILINE)


def run_demo(store) -> tuple[str, list[dict]]:
    binary = os.environ.get("KVC_SERVER_BIN") or pytest.skip("KVC_SERVER_BIN is not set")
    out = subprocess.run([sys.executable, str(SCRIPT), "--kvc-server", binary, "--store", str(store)],
                         capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().endswith("rag: kvc-server exited with 0"), out.stdout
    return out.stdout, [m.groupdict() for m in ANSWER.finditer(out.stdout)]


def test_rag_demo_precomputes_the_corpus_and_answers_from_the_stored_caches(tmp_path):
    first, answers = run_demo(tmp_path)
    documents = int(re.search(r"^rag: corpus: (\d+) documents", first, re.MULTILINE).group(1))
    assert documents >= 8, first  # the sample report's sections and the example's own corpus
    assert f"{documents}/{documents}" in first  # the progress bar ran to the end
    assert re.search(rf"^rag: precompute: {documents} documents, \d+ tokens, 0 already stored", first, re.MULTILINE)
    assert len(answers) == 3, first
    for a in answers:
        assert a["a"].strip(), first
        assert int(a["tin"]) > int(a["tout"]) > 0 and float(a["ratio"]) > 1.5, first
        # Every retrieved document was precomputed a moment ago.
        assert a["hits"] == a["docs"] == "2" and a["cache"] == "miss", first
        assert len(a["r"].split(", ")) == 2

    second, again = run_demo(tmp_path)
    assert f"{documents} documents, " in second and f"{documents} already stored" in second, second
    assert [a["cache"] for a in again] == ["hit"] * 3, second
    assert [a["a"] for a in again] == [a["a"] for a in answers]
