"""Several questions in one Generate call, against a real kvc-server on its embedded default model (label
model: needs KVC_SERVER_BIN): the caches that a precompute job stores before any question (full, and
query-agnostic with novelty) answer each question exactly as a call of its own would, the stream tags every
piece with its question, and a bad question is refused with the gRPC status before any decoding.
"""
import grpc
import pytest

from kvc_client import KvcClient

pytestmark = pytest.mark.model

DOCUMENTS = [
    "The Harbor Bridge over the Kell estuary opened in 1932. Its chief engineer was Lena Ortiz, who designed "
    "the steel arch with a main span of 503 metres.",
    "The Kell City Museum opens at 9 am every day except Monday. Entry costs 12 euros for adults and is free "
    "for children under 16.",
]
QUESTIONS = ["Who was the chief engineer of the Harbor Bridge?", "How much does the museum cost for adults?",
             "When did the Harbor Bridge open?"]


@pytest.mark.parametrize("mode,method,ratio", [("full", None, None), ("query_agnostic", "novelty", 2),
                                               ("query_agnostic", "recall", 2)])
def test_questions_match_separate_calls(kvc_server, mode, method, ratio):
    with KvcClient(kvc_server.address) as kvc:
        stored = kvc.precompute(DOCUMENTS, mode=mode, method=method, ratio=ratio)
        ids = [r.cache_id for r in stored.results]
        gen = kvc.generate_many(ids, QUESTIONS, max_tokens=24)
        order = [q for q, _ in gen]
        assert order == sorted(order) and set(order) == {0, 1, 2}
        answers = gen.results
        for q, question in enumerate(QUESTIONS):
            alone = kvc.generate_text(ids, question, max_tokens=24)
            assert answers[q].text == alone.text and answers[q].token_ids == alone.token_ids, question
            assert answers[q].usage.question == q
            assert answers[q].usage.cached_tokens == alone.usage.cached_tokens
        # The caches were loaded once, for the first question.
        assert answers[0].usage.timings.load_seconds > 0
        assert all(a.usage.timings.load_seconds == 0 for a in answers[1:])


def test_a_bad_question_is_invalid_argument(kvc_server):
    with KvcClient(kvc_server.address) as kvc:
        ids = [r.cache_id for r in kvc.precompute(DOCUMENTS[:1]).results]
        with pytest.raises(grpc.RpcError) as err:
            kvc.generate_answers(ids, [QUESTIONS[0], ""])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "questions[1]" in err.value.details()
