"""Agreement of the transcribed scorers with the official code, case by case.

Each verdict below was produced by running the official code itself on the response
(MMMU-Benchmark/MMMU ``mmmu/utils/eval_utils.py`` and ``mmmu-pro/evaluate.py``;
mathllm/MATH-V ``evaluation/evaluate.py`` L24-48 with ``evaluation/utils.py`` and
latex2sympy2 1.9.1), with ``random.choice`` replaced by a sentinel so that a random guess
shows as ``"RANDOM"``. The visgrpo transcriptions must give the same verdict on every
case (the issue's target is at least 95%): 100 of 100.
"""

from __future__ import annotations

import pytest

from visgrpo.evaluation.scoring_mathvision import mathvision_correct
from visgrpo.evaluation.scoring_mmmu import (
    eval_open,
    multi_choice_info,
    parse_multi_choice_response,
    parse_multi_choice_response_pro,
    parse_open_response,
)


class Sentinel:
    """Stands in for the random guess."""

    def choice(self, letters):
        return "RANDOM"


OPTS4 = ['$1,000', '$2,000', '$3,000', '$4,000']
OPTS10 = ['10 kg', '11 kg', '12 kg', '13 kg', '14 kg', '15 kg', '16 kg', '17 kg', '18 kg', '19 kg']

MMMU_MC = [  # (response, official parse)
    ('The answer is (B).', 'B'),
    ('B', 'B'),
    ('Answer: B', 'B'),
    ('**B**', 'RANDOM'),
    ('The correct option is B because revenue exceeds costs.', 'B'),
    ('The net income is $2,000 since revenue minus expenses gives that amount.', 'B'),
    ('I think (A) is wrong, the answer is (C)', 'C'),
    ('\\boxed{C}', 'RANDOM'),
    ('C. $3,000', 'RANDOM'),
    ('(D) $4,000', 'D'),
    ('Option D is correct.', 'D'),
    ('Looking at the table, A shows revenue; the answer is (D).', 'D'),
    ('I think it is A or B, but B is better', 'B'),
    ('None of the options match exactly, but the closest is $4,000 overall.', 'D'),
    ("Let's compute: 5000 - 3000 = 2000. So the answer is B.", 'B'),
    ('The final answer: A', 'A'),
    ('A', 'A'),
    ('(A)', 'A'),
    ('Therefore, D.', 'D'),
    ('It must be C', 'C'),
    ('Answer: The correct option is C', 'C'),
    ('The answer is B. Not A.', 'A'),
    ('Both A and C look plausible; I pick C.', 'C'),
    ('B) $2,000', 'RANDOM'),
    ('My answer is $3,000.', 'RANDOM'),
    ('cannot determine', 'RANDOM'),
    ('The answer is: (B) $2,000', 'B'),
    ('Step 1: revenue 10. Step 2: costs 8. Answer: A', 'A'),
    ('answer is d', 'RANDOM'),
    ("It's $1,000 because the rest is taxed away heavily.", 'A'),
]
MMMU_PRO = [  # (response, official parse)
    ('Therefore the mass is 19 kg.\nAnswer: J', 'J'),
    ('Answer: The correct option is J', 'J'),
    ('The mass is 19 kg, option (J).', 'J'),
    ('Answer: A or J', 'J'),
    ('Answer: C', 'C'),
    ('The answer is J', 'J'),
    ('J', 'J'),
    ('J.', 'J'),
    ('(J) 19 kg', 'J'),
    ('Answer: (J)', 'J'),
    ('Answer: I think J', 'J'),
    ('The mass equals 15 kg so F is right.', 'F'),
    ('After computing, F. 15 kg', 'F'),
    ('Option E: 14 kg', 'RANDOM'),
    ('the mass is 12 kg, i.e. answer C', 'C'),
    ('Answer: \\boxed{J}', 'J'),
    ('I cannot tell', 'I'),
    ('G', 'G'),
    ('Answer:G', 'G'),
    ('The answer is H and not I.', 'I'),
]
MMMU_OPEN = [  # (response, gold, official verdict)
    ('The ratio is 0.5.', ['0.5', '1/2'], True),
    ('Ratio = 1/2', ['0.5', '1/2'], True),
    ('The ratio is 2.', ['0.5', '1/2'], False),
    ('There are 3 beats per bar.', '3', True),
    ('3/4 time, so the answer is 3', '3', True),
    ('It is 4 beats.', '3', False),
    ('The total is 1,200 dollars', '1200', True),
    ('So the final answer is 12.5%', '12.5', True),
    ('The value is approximately 3.14', '3.14', True),
    ('x = 7', '7', True),
    ('Therefore the speed is 20 m/s.', '20', True),
    ('The answer is blue', 'blue', True),
    ('It looks red to me.', 'blue', False),
    ('Result: 6.02e23', '6.02e23', True),
    ('The angle is 45 degrees', '45', True),
    ('so 0.333', '1/3', False),
    ('The answer is -4', '-4', True),
    ('The temperature is 25.00', '25', True),
    ('So it is 2.', '2', True),
    ('The answer could be 9 or 10', '10', True),
]
MATHVISION = [  # (response, gold, options, official verdict)
    ('The shaded area matches option C.', 'C', ['1', '2', '3', '4', '5'], True),
    ('The answer is 3', 'C', ['1', '2', '3', '4', '5'], True),
    ('so \\boxed{D}', 'C', ['1', '2', '3', '4', '5'], False),
    ('The side is \\boxed{1.5}', '\\frac{3}{2}', [], True),
    ('The answer is $\\frac{3}{2}$.', '\\frac{3}{2}', [], True),
    ('so the length is 3/2.', '\\frac{3}{2}', [], False),
    ('The point is \\boxed{(2, 3)}', '(2,3)', [], True),
    ('\\boxed{(3,2)}', '(2,3)', [], False),
    ('The answer is 12.', '12', [], True),
    ('Thus the area is \\boxed{12\\text{ cm}^2}', '12', [], False),
    ('\\boxed{\\sqrt{2}}', '1.41', [], True),
    ('The final answer is 7', '7', [], True),
    ('The answer is (B).', 'B', ['a', 'b', 'c', 'd', 'e'], True),
    ('B\nbecause it fits', 'B', ['a', 'b', 'c', 'd', 'e'], True),
    ('After all, the answer is \\boxed{b}', 'B', ['a', 'b', 'c', 'd', 'e'], True),
    ('\\boxed{2\\pi}', '6.28', [], True),
    ('The result is 0.5', '\\frac{1}{2}', [], True),
    ('\\boxed{x=4}', '4', [], True),
    ('The answer should be 60^\\circ', '60', [], True),
    ('I get 100 units', '100', [], False),
    ('The correct answer is E.', 'E', ['1', '2', '3', '4', '5'], True),
    ('\\boxed{5}', 'E', ['1', '2', '3', '4', '5'], True),
    ('The answer is 4.', 'E', ['1', '2', '3', '4', '5'], False),
    ('\\boxed{\\frac{1}{3}}', '0.33', [], True),
    ('\\boxed{[1,2]}', '[1,2]', [], True),
    ('\\boxed{(2.0, 3)}', '(2,3)', [], True),
    ('The answer is 2.50', '2.5', [], True),
    ('\\boxed{\\frac{4}{2}}', '2', [], True),
    ('\\boxed{-\\frac{1}{2}}', '-0.5', [], True),
    ('The answer is (C).', 'C', ['1', '2', '3', '4', '5'], True),
]


@pytest.mark.parametrize("response, official", MMMU_MC)
def test_mmmu_multiple_choice_agrees(response, official):
    index2ans, letters = multi_choice_info(OPTS4)
    assert parse_multi_choice_response(response, letters, index2ans, Sentinel()) == official


@pytest.mark.parametrize("response, official", MMMU_PRO)
def test_mmmu_pro_agrees(response, official):
    index2ans, letters = multi_choice_info(OPTS10)
    assert parse_multi_choice_response_pro(response, letters, index2ans, Sentinel()) == official


@pytest.mark.parametrize("response, gold, official", MMMU_OPEN)
def test_mmmu_open_agrees(response, gold, official):
    assert eval_open(gold, parse_open_response(response)) == official


@pytest.mark.parametrize("response, gold, options, official", MATHVISION)
def test_mathvision_agrees(response, gold, options, official):
    assert mathvision_correct(response, gold, options) == official
