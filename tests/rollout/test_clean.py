"""clean_response: EOS / stop-string cut, vision-token removal and rejection (hand-made ids)."""

from __future__ import annotations

import pytest

from visgrpo.rollout.assemble import clean_response
from visgrpo.rollout.base import SamplingConfig

EOS = {9, 10}  # e.g. <|im_end|> and <|endoftext|>
VIS = {5, 6}


def decode(ids):
    """Id k -> letter k (1 -> 'a'), so stop strings can be written by hand."""
    return "".join(chr(96 + i) for i in ids)


def test_cut_after_first_eos_and_keep_it():
    # raw [1, 2, 9, 3, 10]: the first EOS is at index 2, the response is [1, 2, 9]
    assert clean_response([1, 2, 9, 3, 10], EOS, VIS) == ([1, 2, 9], False, False, 0)


def test_no_eos_is_truncated():
    assert clean_response([1, 2, 3], EOS, VIS) == ([1, 2, 3], True, False, 0)


def test_vision_tokens_removed_in_mask_mode():
    # [1, 5, 2, 6, 9, 7]: cut after EOS -> [1, 5, 2, 6, 9]; remove 5 and 6 -> [1, 2, 9]; 2 counted
    assert clean_response([1, 5, 2, 6, 9, 7], EOS, VIS, "mask") == ([1, 2, 9], False, False, 2)


def test_vision_tokens_after_eos_do_not_count():
    assert clean_response([1, 9, 5, 5], EOS, VIS, "reject") == ([1, 9], False, False, 0)


def test_reject_keeps_clean_prefix_and_flags():
    # first vision token at index 2: kept prefix [1, 2]; rejected; one vision token counted
    assert clean_response([1, 2, 5, 3], EOS, VIS, "reject") == ([1, 2], True, True, 1)


def test_stop_string_cuts_at_shortest_prefix():
    # ids 1..4 decode to "abcd"; "bc" first appears once 3 tokens are decoded -> [1, 2, 3], finished
    assert clean_response([1, 2, 3, 4], EOS, VIS, stop_strings=["bc"], decode=decode) == (
        [1, 2, 3],
        False,
        False,
        0,
    )
    # an EOS before the stop string wins: [1, 9, 2, 3] -> [1, 9]
    assert clean_response([1, 9, 2, 3], EOS, VIS, stop_strings=["bc"], decode=decode)[0] == [1, 9]
    # a stop string before the generator's padding (pad id 10 is also an EOS id): [2, 3, 10, 10] -> [2, 3]
    assert clean_response([2, 3, 10, 10], EOS, VIS, stop_strings=["bc"], decode=decode)[0] == [2, 3]


def test_bad_mode_and_sampling_values():
    with pytest.raises(ValueError, match="on_vision_token"):
        clean_response([1], EOS, VIS, "drop")
    with pytest.raises(ValueError, match="num_generations"):
        SamplingConfig(num_generations=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0.0)
    assert SamplingConfig(temperature=0.7).greedy().do_sample is False
