"""Drafts for greedy decoding (`model.drafting`) and their verification (`model.copying.greedy_decode`)."""

from __future__ import annotations

import pytest
import torch

from llamadna.model.drafting import DraftLookup
from tests.model.conftest import make_model, make_processor, rows


def test_a_draft_follows_the_longest_run_of_last_tokens_in_the_first_segment_holding_it():
    look = DraftLookup([[1, 2, 3, 4, 5], [9, 2, 7, 8], [6, 9, 2, 3, 10]], longest=3)
    assert look.propose([2], 3) == [3, 4, 5]  # the first segment holding "2"
    assert look.propose([9, 2], 2) == [7, 8]  # "9 2" beats "2"; its first segment
    assert look.propose([6, 9, 2], 5) == [3, 10]  # three tokens, to the segment's end
    assert look.propose([0, 5], 3) == []  # "5" ends its segment: nothing follows it
    assert look.propose([42], 3) == [] and look.propose([2], 0) == []
    assert look.propose([], 3) == [1, 2, 3]  # nothing written yet: the first segment's opening
    again = DraftLookup([[3, 9, 3, 4, 8, 3, 4]])
    assert again.propose([3, 4], 5) == [8, 3, 4]  # the run's first whole occurrence, not its first token's
    # "8 3 4" ends the segment: the shorter run "3 4" is followed, where it first has a token after it
    assert again.propose([4], 5) == [8, 3, 4] and again.propose([1, 8, 3, 4], 2) == [8, 3]
    with pytest.raises(ValueError):
        DraftLookup([[1, 2]], longest=0)


def _generate(m, b, tt, calls, **kw):
    """(sequences, per-step log-probabilities (S, B, V), LLM passes) of the copy head's loop."""
    calls.clear()
    out, cls = m.generate_with_class(**b, eos_token_id=tt.eos_token_id, pad_token_id=tt.pad_token_id, **kw)
    return out.sequences, torch.stack(out.logits), len(calls), cls


def test_verified_drafts_keep_the_one_token_steps_tokens_in_fewer_passes():
    """Whatever the drafts, the tokens and their log-probabilities are those of one token a step;
    drafts that are the sentence written are verified in the prompt's own pass (its opening) and
    one pass per draft_tokens + 1 tokens after it, wrong ones cost no pass;
    a stop and max_new_tokens end a row where they do without drafts."""
    m = make_model(copy_head=True, llm_training="full").eval()
    proc = make_processor()
    b = proc(rows(3), padding_side="left")
    tt = proc.text_tokenizer
    calls: list[int] = []
    m.language_model.register_forward_pre_hook(lambda *a: calls.append(1))
    new = 12
    plain, plain_lp, plain_passes, plain_cls = _generate(m, b, tt, calls, max_new_tokens=new)
    assert plain.shape[1] == new and plain_passes == new  # the prompt's pass + one a token after the first
    written = [[plain[r].tolist()] for r in range(3)]
    rng = torch.Generator().manual_seed(3)
    wrong = [[torch.randint(5, len(tt), (new,), generator=rng).tolist()] for _ in range(3)]
    for drafts, k, passes in ((written, 20, 1), (written, 3, -(-new // 4)), (wrong, 20, None),
                              (None, 20, None)):
        seqs, lp, n, cls = _generate(m, b, tt, calls, max_new_tokens=new, drafts=drafts, draft_tokens=k)
        assert torch.equal(seqs, plain)
        assert torch.allclose(lp, plain_lp, atol=1e-5) and torch.allclose(cls, plain_cls, atol=1e-6)
        if passes is not None:
            assert n == passes
        else:
            assert n <= plain_passes
    # a stop after 2 tokens of row 0 (called after every token), max_new_tokens 5
    def stop(row, tokens):
        return row == 0 and len(tokens) == 2

    short = _generate(m, b, tt, calls, max_new_tokens=5, stop=stop)[0]
    fast = _generate(m, b, tt, calls, max_new_tokens=5, stop=stop, drafts=written, draft_tokens=20)[0]
    assert torch.equal(fast, short) and fast.shape[1] == 5
    assert torch.equal(fast[0, :2], plain[0, :2]) and bool((fast[0, 2:] == tt.pad_token_id).all())
    assert torch.equal(fast[1:], plain[1:, :5])
