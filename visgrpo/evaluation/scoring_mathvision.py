"""MathVision's official rule-based scorer (mathllm/MATH-V ``evaluation/``), transcribed.

Source: ``evaluation/evaluate.py`` L17-48 (answer extraction from the response, then
``is_equal`` against the gold letter or the gold option's text) and ``evaluation/utils.py``
(``is_equal`` L86-135, ``eval_tuple`` L42-83, ``find_math_answer`` L403-430,
``_strip_string`` L334-399 and its helpers L226-330).

One departure, for safety: the official ``is_equal`` and ``eval_tuple`` call Python
``eval(str(latex2sympy(x)))`` on the model's answer. Here the LaTeX is parsed by
math-verify into a sympy expression (no ``eval``) and evaluated numerically with sympy;
the comparison stays the official one (both values rounded to 2 decimals). An answer of
more than 200 characters is not evaluated (officially latex2sympy would try; such a
string is a whole unparsed response, which does not evaluate to a number).
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager

_BOXED = re.compile(r"oxed{(.*)}", flags=re.S)
MAX_LATEX_CHARS = 200
_FLAGS = ("the final answer is", "the answer is", "the correct answer is", "the answer should be")


def is_number(s: str) -> bool:
    """utils.py L19-24."""
    try:
        float(s)
        return True
    except ValueError:
        return False


@contextmanager
def _quiet():
    """Silence math-verify's per-call warning that no parsing timeout is set (inputs are
    capped at ``MAX_LATEX_CHARS``; its signal-based timeout only works in the main thread).
    """
    log = logging.getLogger("math_verify")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def latex_value(s: str) -> float | int | None:
    """The numeric value of a LaTeX expression, or ``None`` (stands in for the official
    ``eval(str(latex2sympy(s)))``; nothing is ``eval``-ed). An integer stays an ``int``,
    as ``eval`` of sympy's ``"2"`` does, so ``eval_tuple`` writes ``2`` and not ``2.0``.
    """
    from math_verify import parse
    from math_verify.parser import LatexExtractionConfig

    if len(s) > MAX_LATEX_CHARS:  # a whole unparsed response is not an expression
        return None
    try:
        with _quiet():
            parsed = parse(f"${s}$", extraction_config=[LatexExtractionConfig()],
                           parsing_timeout=None)
    except Exception:  # noqa: BLE001 - a parse failure is "not a number", as officially
        return None
    for expr in parsed[:1]:
        if getattr(expr, "is_Integer", False):
            return int(expr)
        if getattr(expr, "is_number", False):
            try:
                value = complex(expr.evalf())
            except (TypeError, ValueError):
                return None
            return value.real if value.imag == 0 else None
    return None


def _round2(s: str) -> str:
    value = latex_value(s)
    if value is None:
        raise ValueError(s)
    if float(value).is_integer():  # latex2sympy reads "2.0" as the integer 2
        value = int(value)
    return str(round(value, 2))


def eval_tuple(s: str) -> str:
    """utils.py L42-83: evaluate each element of ``(a,b)`` / ``[a,b]`` to 2 decimals."""
    sl = s[1:-1].split(",")
    try:
        if len(sl) > 1 and ((s[0] == "(" and s[-1] == ")") or (s[0] == "[" and s[-1] == "]")):
            body = ",".join(_round2(sub) if "infty" not in sub and sub not in ("a", "-a") else sub
                            for sub in sl)
            return f"{s[0]}{body}{s[-1]}"
    except (ValueError, IndexError):
        return s
    return s


def is_equal(asw: str, gt_asw: str) -> bool:
    """utils.py L86-135: exact (lower-cased), tuple-wise, or equal values to 2 decimals."""
    asw, gt_asw = asw.lower(), gt_asw.lower()
    if asw.replace(" ", "") == "" or gt_asw.replace(" ", "") == "":
        return False
    if gt_asw.strip() == asw.strip():
        return True
    asw, gt_asw = eval_tuple(asw), eval_tuple(gt_asw)
    if gt_asw == asw:
        return True
    a, g = latex_value(asw), latex_value(gt_asw)
    return a is not None and g is not None and round(g, 2) == round(a, 2)


def _fix_fracs(string: str) -> str:
    """utils.py L226-269."""
    substrs = string.split("\\frac")
    new_str = substrs[0]
    for substr in substrs[1:]:
        new_str += "\\frac"
        if substr and substr[0] == "{":
            new_str += substr
            continue
        if len(substr) < 2:
            return string
        a, b = substr[0], substr[1]
        if b != "{":
            new_str += "{" + a + "}{" + b + "}" + substr[2:]
        else:
            new_str += "{" + a + "}" + b + substr[2:]
    return new_str


def _fix_a_slash_b(string: str) -> str:
    """utils.py L272-294."""
    if len(string.split("/")) != 2:
        return string
    a, b = string.split("/")
    try:
        ai, bi = int(a), int(b)
    except ValueError:
        return string
    if string != f"{ai}/{bi}":
        return string
    return "\\frac{" + str(ai) + "}{" + str(bi) + "}"


def _fix_sqrt(string: str) -> str:
    """utils.py L305-330."""
    if "\\sqrt" not in string:
        return string
    splits = string.split("\\sqrt")
    new_string = splits[0]
    for split in splits[1:]:
        if split and split[0] != "{":
            new_string += "\\sqrt{" + split[0] + "}" + split[1:]
        else:
            new_string += "\\sqrt" + split
    return new_string


def _strip_string(string: str) -> str:
    """utils.py L334-399."""
    string = string.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    string = string.replace("tfrac", "frac").replace("dfrac", "frac")
    string = string.replace("\\left", "").replace("\\right", "")
    string = string.replace("^{\\circ}", "").replace("^\\circ", "")
    string = string.replace("\\$", "").replace("$", "")
    string = string.split("\\text{ ")[0]  # _remove_right_units, L296-301
    string = string.replace("\\%", "")
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    if not string:
        return string
    if string[0] == ".":
        string = "0" + string
    if len(string.split("=")) == 2:
        string = string.split("=")[-1]
    if len(string.split("\\approx")) == 2:
        string = string.split("\\approx")[-1]
    if "sqrt" in string:
        string = _fix_sqrt(string)
    string = string.replace(" ", "")
    if "sqrt" in string:
        string = _fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return _fix_a_slash_b(string)


def find_math_answer(s: str) -> str:
    r"""utils.py L403-430: the last ``\boxed{}`` content (else all), cleaned."""
    s = s.lower().replace("{}", "")
    found = _BOXED.findall(s)
    ans = found[-1] if found else s
    if ans.find("}") != -1 and (ans.find("{") == -1 or ans.find("}") < ans.find("{")):
        ans = ans.split("}")[0]
    ans = ans.split("=")[-1].split("\\approx")[-1]
    ans = ans.replace(" ", "").replace("\\,", "").replace("∞", "\\infty")
    ans = ans.replace("+\\infty", "\\infty").replace("\\\\", "\\").replace("\n", "")
    ans = ans.replace("\\text", "").replace("\\mbox", "").replace("bmatrix", "pmatrix")
    ans = ans.replace("\\left", "").replace("\\right", "").replace("^{\\circ}", "")
    ans = ans.replace("^\\circ", "").replace("{m}^3", "").replace("m^3", "")
    ans = ans.replace("{units}", "").replace("units", "").replace("{km}", "").replace("km", "")
    return _strip_string(ans)


def extract_answer(response: str) -> str:
    """evaluate.py L24-44: the model's answer from its response."""
    model_answer = response.strip()
    for c in "ABCDE":
        if (model_answer.endswith(f" {c}.") or model_answer.endswith(f" ({c}).")
                or model_answer.startswith(f"{c}\n") or model_answer.startswith(f"({c})\n")
                or model_answer.startswith(f"({c}) {c}\n")):
            model_answer = c
    if is_number(model_answer.split("is ")[-1].rstrip(".")):
        model_answer = model_answer.split("is ")[-1].rstrip(".")
    if "oxed{" not in model_answer:
        for flag in _FLAGS:
            for variant in (flag, flag.replace("the", "The")):
                raw = model_answer
                model_answer = model_answer.split(variant)[-1].strip()
                if variant in raw:
                    model_answer = model_answer.split("\n")[0].split(". ")[0]
    elif model_answer.count("oxed{") > 1:
        model_answer = "\\boxed{" + model_answer.split("oxed{")[-1]
    model_answer = find_math_answer(model_answer)
    for c in "abcde":
        model_answer = model_answer.replace(f"({c})", c).replace(f"{{{c}}}", c)
    return model_answer.rstrip(".").lstrip(":").strip()


def mathvision_correct(response: str, answer: str, options: list[str]) -> bool:
    """evaluate.py L17-48: the extracted answer equals the gold letter or the gold
    option's text (``is_equal``).
    """
    gt_value = ""
    if options:
        index = ord(answer) - ord("A")
        gt_value = options[index] if 0 <= index < len(options) else ""
    model_answer = extract_answer(response)
    return is_equal(answer, model_answer) or is_equal(gt_value, model_answer)
